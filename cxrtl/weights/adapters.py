"""A source's published checkpoint mapped exactly onto the torchvision resnet50 backbone.

The adapter strips the format's key prefix, drops its known head keys (patterns anchored at the key
start), and then requires every tensor of ``torchvision.models.resnet50()`` except ``fc.*`` with its
shape, and nothing else. One allowance: checkpoints written before PyTorch 0.4.1 have no
``num_batches_tracked`` buffers. When those buffers, all of them, are the only tensors a file lacks,
they are set to 0, which is what ``BatchNorm`` itself does when it loads such a file.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision

from cxrtl.errors import CxrtlError
from cxrtl.weights.formats import CheckpointFormat
from cxrtl.weights.registry import SOURCES, get_source
from cxrtl.weights.safe_load import load_checkpoint

_NBT = ".num_batches_tracked"


class FormatMismatch(CxrtlError):
    """The file's contents do not have the layout of the format asked for."""


@dataclass(frozen=True)
class BackboneCheck:
    source: str
    path: Path
    state_dict: dict[str, torch.Tensor]  # torchvision resnet50 names, no fc.*
    prefix: str  # the key prefix that was stripped
    dropped: tuple[str, ...]  # head and training-state keys left out, as named in the file
    filled: tuple[str, ...]  # num_batches_tracked buffers absent from the file, set to 0

    @property
    def tensors(self) -> int:
        return len(self.state_dict)

    def summary(self) -> str:
        prefix = f"prefix {self.prefix!r} stripped" if self.prefix else "no key prefix"
        text = (
            f"{self.source}: all {self.tensors} backbone tensors matched in {self.path} "
            f"({prefix}, {len(self.dropped)} head/training-state keys dropped)"
        )
        if self.filled:
            text += f"; the file has no num_batches_tracked buffers (older PyTorch): {len(self.filled)} set to 0"
        return text


@functools.cache
def backbone_spec() -> dict[str, tuple[torch.Size, bool]]:
    """Name → (shape, is floating point) of every torchvision resnet50 tensor but ``fc.*``."""
    with torch.device("meta"):
        model = torchvision.models.resnet50()
    return {
        name: (tensor.shape, tensor.is_floating_point())
        for name, tensor in model.state_dict().items()
        if not name.startswith("fc.")
    }


def load_backbone_state_dict(source: str, path: Path | str) -> dict[str, torch.Tensor]:
    """The backbone tensors of ``source``'s checkpoint at ``path``, under torchvision resnet50 names."""
    return check_checkpoint(source, path).state_dict


def check_checkpoint(source: str, path: Path | str) -> BackboneCheck:
    """Read ``path`` safely and map it with ``source``'s adapter; CxrtlError if anything does not fit."""
    weight_source = get_source(source)
    path = Path(path)
    contents = load_checkpoint(path)
    fmt = weight_source.format
    try:
        state_dict, prefix, dropped, filled = adapt(fmt, contents)
    except FormatMismatch as exc:
        raise CxrtlError(f"{path}: not a {source} checkpoint ({fmt.description}): {exc}{_hint(contents)}") from None
    _check_values(path, state_dict)
    return BackboneCheck(source, path, state_dict, prefix, dropped, filled)


def _check_values(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Refuse weights that cannot be a trained network: any NaN or infinity (it spreads to every output,
    the loss included), or nothing but zeros (every feature is then constant)."""
    floating = {name: t for name, t in state_dict.items() if t.is_floating_point()}
    broken = [name for name, t in floating.items() if not torch.isfinite(t).all()]
    if broken:
        raise CxrtlError(f"{path}: {len(broken)} backbone tensors hold NaN or infinite values ({_few(broken)})")
    if not any(t.any() for t in floating.values()):
        raise CxrtlError(f"{path}: every backbone weight is zero; this is not a trained network")


def adapt(
    fmt: CheckpointFormat, contents: Any
) -> tuple[dict[str, torch.Tensor], str, tuple[str, ...], tuple[str, ...]]:
    """``(backbone state dict, stripped prefix, dropped keys, filled keys)``; FormatMismatch otherwise."""
    state = _state_dict_of(fmt, contents)
    spec = backbone_spec()
    dropped = tuple(key for key in state if isinstance(key, str) and fmt.drops(key))
    skip = set(dropped)
    found: dict[str, Any] = {}
    prefixes: set[str] = set()
    unexpected: list[str] = []
    for key, value in state.items():
        if key in skip:
            continue
        split = fmt.split_prefix(key) if isinstance(key, str) else None
        if split is None or split[1] not in spec:
            unexpected.append(str(key))
            continue
        prefixes.add(split[0])
        found[split[1]] = value

    missing = [name for name in spec if name not in found]
    filled: tuple[str, ...] = ()
    all_counters = [name for name in spec if name.endswith(_NBT)]
    if missing == all_counters:
        filled, missing = tuple(all_counters), []
    wrong = [_wrong(name, value, *spec[name]) for name, value in found.items()]
    wrong = [w for w in wrong if w]

    problems = []
    if missing:
        problems.append(f"{len(missing)} of {len(spec)} backbone tensors missing ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} tensors of the wrong shape or type ({_few(wrong)})")
    if len(prefixes) > 1:
        problems.append(f"keys mix the prefixes {', '.join(repr(p) for p in sorted(prefixes))}")
    if problems:
        raise FormatMismatch("; ".join(problems))

    backbone = {name: found[name] if name in found else torch.tensor(0, dtype=torch.long) for name in spec}
    return backbone, prefixes.pop() if prefixes else "", dropped, filled


def _state_dict_of(fmt: CheckpointFormat, contents: Any) -> Mapping:
    if fmt.container is None:
        if not isinstance(contents, Mapping) or not all(isinstance(v, torch.Tensor) for v in contents.values()):
            raise FormatMismatch(f"expected a plain state dict (names to tensors), found {_describe(contents)}")
        return contents
    if not isinstance(contents, Mapping) or fmt.container not in contents:
        raise FormatMismatch(f"expected a dict with a {fmt.container!r} entry, found {_describe(contents)}")
    state = contents[fmt.container]
    if not isinstance(state, Mapping):
        raise FormatMismatch(f"its {fmt.container!r} entry is {_describe(state)}, not a state dict")
    return state


def _wrong(name: str, value: Any, shape: torch.Size, floating: bool) -> str | None:
    if not isinstance(value, torch.Tensor):
        return f"{name} is {type(value).__name__}"
    if value.shape != shape:
        return f"{name} {tuple(value.shape)} instead of {tuple(shape)}"
    if value.is_floating_point() != floating:
        return f"{name} {value.dtype}"
    return None


def _hint(contents: Any) -> str:
    """Which sources' formats the contents do fit, for a file given under the wrong name."""
    fits = []
    for source in SOURCES.values():
        try:
            adapt(source.format, contents)
        except FormatMismatch:
            continue
        fits.append(source.name)
    return f"; it fits the format of: {', '.join(fits)}" if fits else ""


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:4]]
        more = ", ..." if len(obj) > 4 else ""
        return f"a dict with keys {', '.join(keys)}{more}" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def _few(names: list[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
