"""What reading checkpoints safely needs from torch beyond its public API, in one place, for torch 2.14.

``torch.load(weights_only=True)`` refuses a file with a ``pickle.UnpicklingError`` whose message alone
says what was refused. For zip checkpoints (what ``torch.save`` writes since torch 1.6) the public
``torch.serialization.get_unsafe_globals_in_checkpoint`` names the globals outside the allow-list; files
in the legacy format, and the unpickler's own reason for a refusal, are read from the message text.

``VERIFIED`` is the torch release series this was checked against; tests/test_sdk_adapters.py fails when
the installed torch is another, or when the message text changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

VERIFIED = "2.14"

_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_REASON_TAG = "WeightsUnpickler error:"


def unsafe_globals(path: Path, refusal: Exception) -> list[str]:
    """The globals outside the allow-list in force that made torch refuse ``path`` (with ``refusal``)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint (ValueError), or one its reader cannot open: the text says
        return _UNSAFE_GLOBAL.findall(str(refusal))[:1]


def refusal_reason(refusal: Exception) -> str:
    """The unpickler's own reason for ``refusal``, out of torch's multi-line advice around it."""
    lines = [line.strip() for line in str(refusal).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if _REASON_TAG in line:
            rest = line.split(_REASON_TAG, 1)[1].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else "")
    return lines[-2] if len(lines) > 2 else lines[-1] if lines else ""
