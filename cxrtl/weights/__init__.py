"""Pretrained-weight sources: the registry, their checkpoint formats, and the weight store.

Names are imported on first use, so that reading the registry (``SOURCE_NAMES``, ``get_source``)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "cxrtl.weights.registry": (
        "SOURCE_NAMES",
        "SOURCES",
        "PublishedMetrics",
        "WeightSource",
        "check_sources",
        "get_source",
    ),
    "cxrtl.weights.adapters": ("BackboneCheck", "check_checkpoint", "load_backbone_state_dict"),
    "cxrtl.weights.standin": ("stand_in_backbone", "write_stand_in"),
    "cxrtl.weights.stored": (
        "StoredWeights",
        "VerifyResult",
        "WeightStatus",
        "list_weights",
        "missing_weights",
        "put_weights",
        "resolve_weights",
        "verify_weights",
        "weights_commands",
    ),
    "cxrtl.weights.download": ("MIRROR_ENV", "FetchResult", "fetch_weights"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'cxrtl.weights' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
