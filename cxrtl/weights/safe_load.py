"""Reading third-party checkpoints without running anything in them.

Checkpoints are pickles. They are read with ``torch.load(weights_only=True)``, whose unpickler only
rebuilds tensors and plain containers and refuses any other global before calling it. The only
additions are numpy scalars (a best loss or accuracy saved as ``numpy.float64`` next to the weights):
``numpy.core.multiarray.scalar`` under its numpy 1 and numpy 2 names, ``numpy.dtype`` and the dtype
classes of the numeric scalars. None of them can call arbitrary code. Full unpickling is never used.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrtl.errors import CxrtlError

NUMPY_SCALAR_GLOBALS = [
    np._core.multiarray.scalar,
    # Files written under numpy 1 name the function by its old module path.
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
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

_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def load_checkpoint(path: Path) -> Any:
    """The unpickled contents of a checkpoint file, tensors on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CxrtlError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS), warnings.catch_warnings():
            # torch warns about pickle protocols it may not parse; a failure is reported below instead.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a malformed third-party file can fail anywhere in the parser
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        unsafe = _UNSAFE_GLOBAL.search(str(exc))
        if unsafe:
            raise CxrtlError(
                f"{path}: refused: the file refers to {unsafe.group(1)}, outside the allow-list for checkpoints "
                "(tensors, plain containers, numpy scalars); it was not loaded and nothing in it was run"
            ) from None
        if lines and lines[0].startswith("Weights only load failed"):
            detail = _unpickler_detail(lines)
            raise CxrtlError(
                f"{path}: not a PyTorch checkpoint that can be read safely ({detail[:200]}); nothing in it was run"
            ) from None
        first_line = lines[0].split(". ")[0] if lines else ""
        raise CxrtlError(
            f"{path}: not a readable PyTorch checkpoint (truncated or another kind of file?): "
            f"{type(exc).__name__}: {first_line[:200]}".rstrip(": ")
        ) from None


def _unpickler_detail(lines: list[str]) -> str:
    """The unpickler's own reason, out of torch's multi-line advice around it."""
    tag = "WeightsUnpickler error:"
    for i, line in enumerate(lines):
        if tag in line:
            rest = line.split(tag, 1)[1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else "")
    return lines[-2] if len(lines) > 2 else lines[-1]
