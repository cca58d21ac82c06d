"""Grad-CAM heat maps (Selvaraju et al. 2017) of the study's ResNet50, and the test images they are shown for.

A short implementation on a forward hook and ``torch.autograd.grad`` rather than the ``grad-cam`` package:
that one pulls in OpenCV, ttach and more for these twenty lines, and its gradients would accumulate into the
model's parameters, which ``autograd.grad`` leaves alone.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cxrtl.errors import CxrtlError

GRADCAM_FILE = "gradcam.npz"
FIXED_PER_CLASS = 3  # images of each class shown for every source
MAX_MISTAKES = 3  # a source's most confident mistakes shown besides them


def grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor | int) -> np.ndarray:
    """Heat maps in [0, 1], float [B, H, W] at the input's size, of class ``target`` (per image or one for all).

    ``layer``'s output is the feature map explained (for ResNet50: ``model.layer4``, the last conv block).
    The model is used as it is (call ``.eval()`` first for inference behaviour); its parameters' gradients
    are not touched.
    """
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # so the feature map has a graph even with frozen parameters
            logits = model(x)
            targets = torch.as_tensor(target, device=logits.device).expand(len(logits))
            score = logits.gather(1, targets.view(-1, 1)).sum()
            (gradient,) = torch.autograd.grad(score, captured[-1])
    finally:
        handle.remove()
    features = captured[-1].detach()
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # each channel's importance: its pooled gradient
    cam = F.relu((weights * features).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(torch.finfo(cam.dtype).tiny).view(-1, 1, 1)
    return (cam / peak).cpu().numpy()


def fixed_images(ids: list[str], labels: np.ndarray, per_class: int = FIXED_PER_CLASS) -> np.ndarray:
    """Positions (into ``ids``) of the images every source is shown on: per class, the ``per_class`` whose
    id has the lowest SHA-256; the same set for every source and every run on the same test split, and no
    bias from the order or naming of the files. COVID first, then Normal."""
    chosen = []
    for label in (1, 0):
        members = np.flatnonzero(np.asarray(labels) == label)
        members = sorted(members, key=lambda i: hashlib.sha256(ids[i].encode()).hexdigest())
        chosen.extend(members[:per_class])
    return np.array(chosen, dtype=int)


def confident_mistakes(
    labels: np.ndarray, p_positive: np.ndarray, threshold: float, exclude: np.ndarray, limit: int = MAX_MISTAKES
) -> np.ndarray:
    """Positions of up to ``limit`` wrongly classified images, the most confident first (ties: first position)."""
    labels, p_positive = np.asarray(labels), np.asarray(p_positive, dtype=float)
    wrong = (p_positive >= threshold).astype(int) != labels
    wrong[np.asarray(exclude, dtype=int)] = False
    candidates = np.flatnonzero(wrong)
    confidence = np.abs(p_positive[candidates] - threshold)
    return candidates[np.argsort(-confidence, kind="stable")][:limit]


@dataclass
class GradCamSet:
    """One source's heat maps: what ``gradcam.npz`` holds, one entry per image."""

    ids: list[str]
    labels: np.ndarray  # int, 1 = COVID
    probabilities: np.ndarray  # float, COVID probability
    threshold: float  # at or above it an image is called COVID
    targets: np.ndarray  # int, the class each map explains (the predicted one)
    kinds: list[str]  # "fixed" (shown for every source) or "mistake" (this source's)
    images: np.ndarray  # uint8 [K, S, S], the test images
    maps: np.ndarray  # uint8 [K, S, S], the heat maps scaled to 0..255

    @property
    def correct(self) -> np.ndarray:
        return (self.probabilities >= self.threshold).astype(int) == self.labels

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            ids=np.array(self.ids, dtype=str),
            labels=self.labels,
            probabilities=self.probabilities,
            threshold=np.float64(self.threshold),
            targets=self.targets,
            kinds=np.array(self.kinds, dtype=str),
            images=self.images,
            maps=self.maps,
        )

    @classmethod
    def load(cls, path: Path) -> GradCamSet:
        try:
            with np.load(path, allow_pickle=False) as saved:
                return cls(
                    ids=saved["ids"].tolist(),
                    labels=saved["labels"],
                    probabilities=saved["probabilities"],
                    threshold=float(saved["threshold"]),
                    targets=saved["targets"],
                    kinds=saved["kinds"].tolist(),
                    images=saved["images"],
                    maps=saved["maps"],
                )
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise CxrtlError(f"{path}: not a Grad-CAM file written by cxrtl ({type(exc).__name__})") from None


def explain(
    model: nn.Module,
    to_input: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    positions: np.ndarray,
    ids: list[str],
    labels: np.ndarray,
    p_positive: np.ndarray,
    threshold: float,
) -> GradCamSet:
    """Grad-CAM of the predicted class on the fixed images and the model's most confident mistakes.

    ``ids``, ``labels`` and ``p_positive`` cover the test split in one order, whose k-th image is
    ``images[positions[k]]`` (uint8 [S, S]; ``images`` may be memory-mapped: only the chosen few are read).
    ``to_input`` turns a uint8 batch tensor into the network's input on its device. ``model`` is a ResNet.
    """
    fixed = fixed_images(ids, labels)
    mistakes = confident_mistakes(labels, p_positive, threshold, exclude=fixed)
    chosen = np.concatenate([fixed, mistakes]).astype(int)
    picked = np.ascontiguousarray(images[np.asarray(positions)[chosen]])
    probabilities = np.asarray(p_positive, dtype=float)[chosen]
    targets = (probabilities >= threshold).astype(int)
    model.eval()
    x = to_input(torch.from_numpy(picked))
    maps = grad_cam(model, model.layer4, x, torch.from_numpy(targets).to(x.device))
    return GradCamSet(
        ids=[ids[i] for i in chosen],
        labels=np.asarray(labels)[chosen].astype(int),
        probabilities=probabilities,
        threshold=threshold,
        targets=targets,
        kinds=["fixed"] * len(fixed) + ["mistake"] * len(mistakes),
        images=picked,
        maps=np.round(maps * 255).astype(np.uint8),
    )
