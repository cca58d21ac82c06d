"""Stand-in checkpoints: each source's native file layout around a seeded random ResNet50.

For tests and the demo, so that neither ever trains from a silent random init. A stand-in has the
published file's top-level keys, key prefix, head and head shapes, so it goes through exactly the
adapter the real file goes through. Its backbone is torchvision's resnet50 initialisation under a seed
derived from (source, seed), with every BatchNorm weight, bias and statistic then drawn at random as
well, so that no two backbone tensors are alike and a swapped or skipped tensor shows in a comparison.
Training-state entries (optimizer, scheduler, amp) have their published structure but no per-parameter
buffers: nothing reads them, and full-size copies would double the file.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from cxrtl.files import atomic_file
from cxrtl.weights.registry import get_source

logger = logging.getLogger(__name__)

_Tensors = dict[str, torch.Tensor]

# Head sizes of the published files.
_FEATURES = 2048
_CXR_LABELS = 14
_INAT_CLASSES = 10_000
_SWAV_PROJECTION = 128
_SWAV_PROTOTYPES = 3000
_MOCO_DIM = 128
_MOCO_QUEUE = 65_536


def stand_in_backbone(source: str, seed: int = 0) -> _Tensors:
    """The backbone tensors the stand-in for ``source`` carries, under torchvision names, no ``fc.*``."""
    state, _ = _seeded_resnet50(source, seed)
    return {name: tensor for name, tensor in state.items() if not name.startswith("fc.")}


def write_stand_in(source: str, out: Path | str, seed: int = 0) -> Path:
    """Write a checkpoint in ``source``'s native format to ``out``; the same bytes for the same seed."""
    fmt = get_source(source).format
    state, generator = _seeded_resnet50(source, seed)
    contents = _NATIVE[fmt.name](state, generator)
    out = Path(out)
    # Saved through a file object, the archive's inner folder is always "archive", not the file's
    # name, so the bytes (and the sha256) depend on source and seed only.
    with atomic_file(out) as part, open(part, "wb") as f:
        torch.save(contents, f)
    logger.info("wrote a %s stand-in (%s format, seed %d) to %s", source, fmt.name, seed, out)
    return out


def _seeded_resnet50(source: str, seed: int) -> tuple[OrderedDict[str, torch.Tensor], torch.Generator]:
    derived = int.from_bytes(hashlib.sha256(f"{source}:{seed}".encode()).digest()[:8], "big")
    generator = torch.Generator().manual_seed(derived)
    # torchvision initialises from the global generator; fork it so callers' random state is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived)
        model = torchvision.models.resnet50()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.1, generator=generator)
                module.running_mean.normal_(0.0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.num_batches_tracked.fill_(int(torch.randint(1, 10**6, (), generator=generator)))
    return model.state_dict(), generator


def _random(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=generator) * 0.01


def _backbone(state: _Tensors, prefix: str) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((prefix + name, t) for name, t in state.items() if not name.startswith("fc."))


def _linear(generator: torch.Generator, name: str, n_out: int, n_in: int, bias: bool = True) -> _Tensors:
    tensors = {f"{name}.weight": _random(generator, n_out, n_in)}
    if bias:
        tensors[f"{name}.bias"] = _random(generator, n_out)
    return tensors


def _optimizer_state(kind: type[torch.optim.Optimizer], n_params: int, **settings: Any) -> dict:
    """An optimizer's state dict before its first step: the published structure, no buffers."""
    return kind([torch.zeros(1) for _ in range(n_params)], **settings).state_dict()


def _n_params(state: _Tensors) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked", "queue", "queue_ptr")
    return sum(not name.endswith(buffers) for name in state)


def _torchvision(state: _Tensors, generator: torch.Generator) -> Any:
    return state  # torchvision publishes the model's state dict itself, fc 1000 included


def _zenodo_cxr(state: _Tensors, generator: torch.Generator) -> Any:
    weights = _backbone(state, "module.")
    weights.update(_linear(generator, "module.fc.0", _CXR_LABELS, _FEATURES))
    optimizer = torch.optim.Adam([torch.zeros(1) for _ in range(_n_params(weights))], lr=2e-4)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5, mode="min")
    return {
        "epoch": 40,
        "lossMIN": 0.1523,
        "state_dict": weights,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }


def _inat_supervised(state: _Tensors, generator: torch.Generator) -> Any:
    weights = _backbone(state, "")
    weights.update(_linear(generator, "fc", _INAT_CLASSES, _FEATURES))
    return {
        "epoch": 75,
        "arch": "resnet50",
        "state_dict": weights,
        "best_acc1": torch.tensor(76.4),
        "optimizer": _optimizer_state(torch.optim.SGD, _n_params(weights), lr=0.1, momentum=0.9),
    }


def _swav(state: _Tensors, generator: torch.Generator) -> Any:
    weights = _backbone(state, "module.")
    weights.update(_linear(generator, "module.projection_head.0", _FEATURES, _FEATURES))
    weights.update(
        {
            "module.projection_head.1.weight": 1.0 + _random(generator, _FEATURES),
            "module.projection_head.1.bias": _random(generator, _FEATURES),
            "module.projection_head.1.running_mean": _random(generator, _FEATURES),
            "module.projection_head.1.running_var": 1.0 + _random(generator, _FEATURES).abs(),
            "module.projection_head.1.num_batches_tracked": torch.tensor(1000, dtype=torch.long),
        }
    )
    weights.update(_linear(generator, "module.projection_head.3", _SWAV_PROJECTION, _FEATURES))
    weights.update(_linear(generator, "module.prototypes", _SWAV_PROTOTYPES, _SWAV_PROJECTION, bias=False))
    return {
        "epoch": 1000,
        "state_dict": weights,
        "optimizer": _optimizer_state(torch.optim.SGD, _n_params(weights), lr=0.6, momentum=0.9),
        "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}},
    }


def _moco(state: _Tensors, generator: torch.Generator, *, mlp: bool) -> Any:
    query = _backbone(state, "")
    if mlp:
        query.update(_linear(generator, "fc.0", _FEATURES, _FEATURES))
        query.update(_linear(generator, "fc.2", _MOCO_DIM, _FEATURES))
    else:
        query.update(_linear(generator, "fc", _MOCO_DIM, _FEATURES))
    weights = OrderedDict((f"module.encoder_q.{name}", t) for name, t in query.items())
    # The key encoder is a momentum average of the query encoder: close to it, never equal.
    for name, t in query.items():
        key = t + _random(generator, *t.shape) if t.is_floating_point() else t.clone()
        weights[f"module.encoder_k.{name}"] = key
    queue = torch.randn((_MOCO_DIM, _MOCO_QUEUE), generator=generator)
    weights["module.queue"] = nn.functional.normalize(queue, dim=0)
    weights["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"state_dict": weights, "arch": "resnet50", "epoch": 800 if mlp else 200}


_NATIVE: dict[str, Callable[[_Tensors, torch.Generator], Any]] = {
    "torchvision": _torchvision,
    "zenodo-cxr": _zenodo_cxr,
    "inat-supervised": _inat_supervised,
    "swav": _swav,
    "moco-v1": lambda state, generator: _moco(state, generator, mlp=False),
    "moco-v2": lambda state, generator: _moco(state, generator, mlp=True),
}
