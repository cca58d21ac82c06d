"""cxrtl: the Hossain et al. (2022) ResNet50 transfer-learning study as a reproducible pipeline.

The library does the work (data, weights, model, training, metrics, storage, reports);
the Kubeflow components in ``components/`` only call into it.
"""

__version__ = "0.1.0"
