"""Reading third-party checkpoints without running anything in them.

Checkpoints are pickles. They are read with ``torch.load(weights_only=True)``, whose unpickler only
rebuilds tensors and plain containers and refuses any other global before calling it. The only
additions are numpy scalars (a best loss or accuracy saved as ``numpy.float64`` next to the weights):
``numpy.core.multiarray.scalar`` under its numpy 1 and numpy 2 names, ``numpy.dtype`` and the dtype
classes of the numeric scalars. None of them can call arbitrary code. Full unpickling is never used.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrtl.errors import CxrtlError
from cxrtl.weights.torch_adapter import refusal_reason, unsafe_globals

# The function numpy pickles its scalars with, asked of numpy through the pickle protocol rather than
# named by its private module (numpy._core.multiarray in numpy 2).
_NUMPY_SCALAR = np.float64(0).__reduce__()[0]

NUMPY_SCALAR_GLOBALS = [
    _NUMPY_SCALAR,
    # Files written under numpy 1 name the function by its old module path.
    (_NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
    np.dtype,
    *(
        getattr(np.dtypes, name)
        for name in (
            "BoolDType",
            "Float16DType",
            "Float32DType",
            "Float64DType",
            "Int8DType",
            "Int16DType",
            "Int32DType",
            "Int64DType",
            "UInt8DType",
        )
    ),
]


def load_checkpoint(path: Path) -> Any:
    """The unpickled contents of a checkpoint file, tensors on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CxrtlError(f"{path}: no such file")
    with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
        try:
            with warnings.catch_warnings():
                # torch warns about pickle protocols it may not parse; a failure is reported below instead.
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # torch's weights-only unpickler refused the file
            unsafe = unsafe_globals(path, exc)
            if unsafe:
                raise CxrtlError(
                    f"{path}: refused: the file refers to {', '.join(unsafe)}, outside the allow-list for "
                    "checkpoints (tensors, plain containers, numpy scalars); it was not loaded and nothing in it "
                    "was run"
                ) from None
            raise CxrtlError(
                f"{path}: not a PyTorch checkpoint that can be read safely ({refusal_reason(exc)[:200]}); "
                "nothing in it was run"
            ) from None
        except Exception as exc:  # a malformed third-party file can fail anywhere in the parser
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            first_line = lines[0].split(". ")[0] if lines else ""
            raise CxrtlError(
                f"{path}: not a readable PyTorch checkpoint (truncated or another kind of file?): "
                f"{type(exc).__name__}: {first_line[:200]}".rstrip(": ")
            ) from None
