"""From stored uint8 grayscale batches to the network's input."""

from __future__ import annotations

import torch

# torchvision's ImageNet statistics, used by the recommended recipe only: the study trained without normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_model_input(batch: torch.Tensor, normalize: bool) -> torch.Tensor:
    """uint8 [B, H, W] grayscale → float [B, 3, H, W] in [0, 1] (ToTensor of the RGB image), optionally normalised.

    The study opened each grayscale PNG as RGB, which repeats the one channel three times.
    """
    x = batch.unsqueeze(1).float().div_(255).expand(-1, 3, -1, -1)
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous()
