"""The published checkpoint layouts of the weight sources, as data the adapter and the stand-ins share.

Every pattern is a regular expression matched at the start of a key (``re.match``), so ``fc\\.``
drops ``fc.weight`` but never ``layer4.0.fc_x`` or ``encoder_q.fc.weight``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CheckpointFormat:
    name: str
    description: str
    # Top-level key holding the state dict; None when the file is the state dict itself.
    container: str | None
    # Prefix every backbone key carries; a regex so an optional ``module.`` can be expressed.
    prefix: str
    # Head and auxiliary keys (full keys, prefix included) that are dropped, not loaded.
    drop: tuple[str, ...]

    def drops(self, key: str) -> bool:
        return any(re.match(pattern, key) for pattern in self.drop)

    def split_prefix(self, key: str) -> tuple[str, str] | None:
        """``(prefix, rest)`` when ``key`` carries this format's prefix, else None."""
        match = re.match(self.prefix, key)
        return (match.group(0), key[match.end() :]) if match else None


TORCHVISION = CheckpointFormat(
    name="torchvision",
    description="a plain torchvision state dict with an fc head",
    container=None,
    prefix="",
    drop=(r"fc\.",),
)

# Zenodo 5205234 (Hosseinzadeh Taher et al.): {epoch, lossMIN, state_dict, optimizer, scheduler};
# ``module.`` when trained under DataParallel; head fc = Sequential(Linear(2048, 14), Sigmoid).
ZENODO_CXR = CheckpointFormat(
    name="zenodo-cxr",
    description="{epoch, lossMIN, state_dict, optimizer, scheduler} with a 14-label fc.0 head",
    container="state_dict",
    prefix=r"(module\.)?",
    drop=(r"(module\.)?fc\.",),
)

# NeWT release, trained with the PyTorch ImageNet example: {epoch, arch, state_dict, best_acc1, optimizer}.
INAT_SUPERVISED = CheckpointFormat(
    name="inat-supervised",
    description="{epoch, arch, state_dict, best_acc1, optimizer} with a 10,000-class fc head",
    container="state_dict",
    prefix=r"(module\.)?",
    drop=(r"(module\.)?fc\.",),
)

# facebookresearch/swav main_swav.py: {epoch, state_dict, optimizer, amp}; the model has no fc.
SWAV = CheckpointFormat(
    name="swav",
    description="{epoch, state_dict, optimizer, amp} with projection_head and prototypes",
    container="state_dict",
    prefix=r"(module\.)?",
    drop=(r"(module\.)?projection_head\.", r"(module\.)?prototypes\."),
)

# facebookresearch/moco main_moco.py: the query encoder is the backbone; the key encoder and the
# queue of negatives are training state, dropped when present.
_MOCO_DROP = (
    r"(module\.)?encoder_q\.fc\.",
    r"(module\.)?encoder_k\.",
    r"(module\.)?queue(_ptr)?$",
)
MOCO_V1 = CheckpointFormat(
    name="moco-v1",
    description="{state_dict, arch, epoch} with the backbone under module.encoder_q. and a 128-d fc",
    container="state_dict",
    prefix=r"(module\.)?encoder_q\.",
    drop=_MOCO_DROP,
)
MOCO_V2 = CheckpointFormat(
    name="moco-v2",
    description="{state_dict, arch, epoch} with the backbone under module.encoder_q. and an MLP fc.0/fc.2",
    container="state_dict",
    prefix=r"(module\.)?encoder_q\.",
    drop=_MOCO_DROP,
)
