"""Stand-in checkpoints: each source's native file layout around a seeded random ResNet50.

For tests and the demo, so that neither ever trains from a silent random init. A stand-in has the
published file's top-level keys, key prefix, head and head shapes, so it goes through exactly the
adapter the real file goes through. Its tensors are drawn under a seed derived from (source, seed).

A stand-in is small on disk (about 11 MB, where the published files are 100-300 MB): every weight
matrix is a window, at its own random offset, into one pool of random numbers that the file stores
once (``torch.save`` keeps views of one storage as views). A backbone of full-size independent draws
would make the demo's ten stand-ins 1.4 GB, most of its disk use. Windows at different offsets still
differ element by element, so no two tensors are alike and a swapped or skipped tensor shows in a
comparison. One scale serves every convolution because each is followed by a BatchNorm, which
normalises the scale away in training; the BatchNorm tensors themselves are drawn in full.
Heads are windows with overlapping rows (row i starts one element after row i-1): nothing reads them,
and the largest, iNat's 10,000 classes, would alone be 82 MB. Training-state entries (optimizer,
scheduler, amp) have their published structure but no per-parameter buffers: nothing reads them.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
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

# Large enough for ResNet50's largest tensor (layer4's 3x3 convolutions, 2,359,296 values) at many
# offsets; 10 MiB of float32.
_POOL_SIZE = 2_621_440
# He initialisation's standard deviation for a fan-out of 2048, within a factor of 6 of every layer's.
_POOL_STD = 0.03


@dataclass(frozen=True)
class _Draws:
    """Seeded random tensors: windows into one shared pool, or small tensors of their own."""

    generator: torch.Generator
    pool: torch.Tensor

    @classmethod
    def of(cls, source: str, seed: int) -> _Draws:
        derived = int.from_bytes(hashlib.sha256(f"{source}:{seed}".encode()).digest()[:8], "big")
        generator = torch.Generator().manual_seed(derived)
        return cls(generator, torch.randn(_POOL_SIZE, generator=generator) * _POOL_STD)

    def window(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """A contiguous view of ``shape`` at a random offset into the pool."""
        numel = torch.Size(shape).numel()
        return self.pool[self._offset(numel) :][:numel].view(shape)

    def rows(self, n_out: int, n_in: int) -> torch.Tensor:
        """An ``n_out`` by ``n_in`` view whose row i starts one element after row i-1."""
        return self.pool.as_strided((n_out, n_in), (1, 1), self._offset(n_out + n_in - 1))

    def normal(self, shape: torch.Size | tuple[int, ...], std: float) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator) * std

    def uniform(self, shape: torch.Size | tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return torch.empty(shape).uniform_(low, high, generator=self.generator)

    def _offset(self, numel: int) -> int:
        return int(torch.randint(0, _POOL_SIZE - numel + 1, (), generator=self.generator))


def stand_in_backbone(source: str, seed: int = 0) -> _Tensors:
    """The backbone tensors the stand-in for ``source`` carries, under torchvision names, no ``fc.*``."""
    return _backbone(_resnet50(_Draws.of(source, seed)), "")


def write_stand_in(source: str, out: Path | str, seed: int = 0) -> Path:
    """Write a checkpoint in ``source``'s native format to ``out``; the same bytes for the same seed."""
    fmt = get_source(source).format
    draws = _Draws.of(source, seed)
    contents = _NATIVE[fmt.name](_resnet50(draws), draws)
    out = Path(out)
    # Saved through a file object, the archive's inner folder is always "archive", not the file's
    # name, so the bytes (and the sha256) depend on source and seed only.
    with atomic_file(out) as part, open(part, "wb") as f:
        torch.save(contents, f)
    logger.info("wrote a %s stand-in (%s format, seed %d) to %s", source, fmt.name, seed, out)
    return out


def _resnet50(draws: _Draws) -> OrderedDict[str, torch.Tensor]:
    """Every tensor of torchvision's resnet50, ``fc`` (1000 classes) included, in its order."""
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, meta in model.state_dict().items():
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name)
        if isinstance(module, nn.BatchNorm2d):
            state[name] = _batch_norm(draws, leaf, meta.shape)
        elif isinstance(module, nn.Linear) and leaf == "weight":
            state[name] = draws.rows(*meta.shape)
        else:
            state[name] = draws.window(meta.shape)
    return state


def _batch_norm(draws: _Draws, leaf: str, shape: torch.Size) -> torch.Tensor:
    if leaf == "num_batches_tracked":
        return torch.tensor(int(torch.randint(1, 10**6, (), generator=draws.generator)))
    if leaf in ("weight", "running_var"):
        return draws.uniform(shape, 0.5, 1.5)
    return draws.normal(shape, 0.1)  # bias, running_mean


def _backbone(state: _Tensors, prefix: str) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((prefix + name, t) for name, t in state.items() if not name.startswith("fc."))


def _linear(draws: _Draws, name: str, n_out: int, n_in: int, bias: bool = True) -> _Tensors:
    tensors = {f"{name}.weight": draws.rows(n_out, n_in)}
    if bias:
        tensors[f"{name}.bias"] = draws.window((n_out,))
    return tensors


def _optimizer_state(kind: type[torch.optim.Optimizer], n_params: int, **settings: Any) -> dict:
    """An optimizer's state dict before its first step: the published structure, no buffers."""
    return kind([torch.zeros(1) for _ in range(n_params)], **settings).state_dict()


def _n_params(state: _Tensors) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked", "queue", "queue_ptr")
    return sum(not name.endswith(buffers) for name in state)


def _torchvision(state: _Tensors, draws: _Draws) -> Any:
    return state  # torchvision publishes the model's state dict itself, fc 1000 included


def _zenodo_cxr(state: _Tensors, draws: _Draws) -> Any:
    weights = _backbone(state, "module.")
    weights.update(_linear(draws, "module.fc.0", _CXR_LABELS, _FEATURES))
    optimizer = torch.optim.Adam([torch.zeros(1) for _ in range(_n_params(weights))], lr=2e-4)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5, mode="min")
    return {
        "epoch": 40,
        "lossMIN": 0.1523,
        "state_dict": weights,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }


def _inat_supervised(state: _Tensors, draws: _Draws) -> Any:
    weights = _backbone(state, "")
    weights.update(_linear(draws, "fc", _INAT_CLASSES, _FEATURES))
    return {
        "epoch": 75,
        "arch": "resnet50",
        "state_dict": weights,
        "best_acc1": torch.tensor(76.4),
        "optimizer": _optimizer_state(torch.optim.SGD, _n_params(weights), lr=0.1, momentum=0.9),
    }


def _swav(state: _Tensors, draws: _Draws) -> Any:
    weights = _backbone(state, "module.")
    weights.update(_linear(draws, "module.projection_head.0", _FEATURES, _FEATURES))
    weights.update(
        {
            "module.projection_head.1.weight": draws.uniform((_FEATURES,), 0.5, 1.5),
            "module.projection_head.1.bias": draws.normal((_FEATURES,), 0.1),
            "module.projection_head.1.running_mean": draws.normal((_FEATURES,), 0.1),
            "module.projection_head.1.running_var": draws.uniform((_FEATURES,), 0.5, 1.5),
            "module.projection_head.1.num_batches_tracked": torch.tensor(1000, dtype=torch.long),
        }
    )
    weights.update(_linear(draws, "module.projection_head.3", _SWAV_PROJECTION, _FEATURES))
    weights.update(_linear(draws, "module.prototypes", _SWAV_PROTOTYPES, _SWAV_PROJECTION, bias=False))
    return {
        "epoch": 1000,
        "state_dict": weights,
        "optimizer": _optimizer_state(torch.optim.SGD, _n_params(weights), lr=0.6, momentum=0.9),
        "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}},
    }


def _moco(state: _Tensors, draws: _Draws, *, mlp: bool) -> Any:
    weights: OrderedDict[str, torch.Tensor] = OrderedDict()
    # The key encoder, a momentum average of the query encoder, is drawn apart from it: never equal,
    # so that an adapter that took the wrong encoder shows.
    for encoder, tensors in (("encoder_q", state), ("encoder_k", _resnet50(draws))):
        encoder_state = _backbone(tensors, "")
        if mlp:
            encoder_state.update(_linear(draws, "fc.0", _FEATURES, _FEATURES))
            encoder_state.update(_linear(draws, "fc.2", _MOCO_DIM, _FEATURES))
        else:
            encoder_state.update(_linear(draws, "fc", _MOCO_DIM, _FEATURES))
        weights.update((f"module.{encoder}.{name}", t) for name, t in encoder_state.items())
    weights["module.queue"] = draws.rows(_MOCO_DIM, _MOCO_QUEUE)
    weights["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"state_dict": weights, "arch": "resnet50", "epoch": 800 if mlp else 200}


_NATIVE: dict[str, Callable[[_Tensors, _Draws], Any]] = {
    "torchvision": _torchvision,
    "zenodo-cxr": _zenodo_cxr,
    "inat-supervised": _inat_supervised,
    "swav": _swav,
    "moco-v1": lambda state, draws: _moco(state, draws, mlp=False),
    "moco-v2": lambda state, draws: _moco(state, draws, mlp=True),
}
