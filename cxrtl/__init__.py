"""cxrtl: the Hossain et al. (2022) ResNet50 transfer-learning study as a reproducible pipeline.

The library does the work (data, weights, model, training, metrics, storage, reports);
the Kubeflow components in ``components/`` only call into it.
"""

import os

__version__ = "0.1.0"

# On every report, prediction and answer this project gives.
RESEARCH_ONLY = "Research use only, not a medical device: nothing here may guide the care of a patient."

# Set by docker/Dockerfile to the reference the image was built under (make images: its content tag).
IMAGE_ENV = "CXRTL_IMAGE"


def running_image() -> str | None:
    """The container image this process runs in, as its build named it; None outside one of ours."""
    return os.environ.get(IMAGE_ENV) or None
