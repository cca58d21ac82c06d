"""The study's network: torchvision ResNet50 with its fc replaced by a dropout MLP head."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet50

from cxrtl.errors import CxrtlError

NUM_CLASSES = 2


def paper_head(in_features: int = 2048, num_classes: int = NUM_CLASSES) -> nn.Sequential:
    """Linear → Dropout → Linear → ReLU → Dropout → Linear, as in the study's notebooks."""
    return nn.Sequential(
        nn.Linear(in_features, 2048),
        nn.Dropout(0.5),
        nn.Linear(2048, 2048),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(2048, num_classes),
    )


def build_model(backbone: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """A ResNet50 with the study's head; ``backbone`` (all tensors but ``fc.*``) loaded if given."""
    model = resnet50(weights=None)
    model.fc = paper_head(model.fc.in_features)
    if backbone is not None:
        missing, unexpected = model.load_state_dict(backbone, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise CxrtlError(f"backbone does not fit ResNet50: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze everything but the head. BatchNorm statistics still update in train mode,
    as they did in the study's frozen sessions."""
    for name, param in model.named_parameters():
        if not name.startswith("fc."):
            param.requires_grad_(trainable)
