"""One epoch of training, and predictions: the loops shared by train and evaluate."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from cxrtl.errors import CxrtlError
from cxrtl.model import NUM_CLASSES
from cxrtl.transforms import to_model_input

logger = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CxrtlError(f"device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CxrtlError(f"device {name!r}: no CUDA GPU is available here; use auto or cpu")
    return device


def iter_batches(
    images: np.ndarray, indices: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """uint8 batches of ``images[indices]``, shuffled when ``rng`` is given; yields (batch indices, batch)."""
    order = rng.permutation(indices) if rng is not None else indices
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        yield batch, torch.from_numpy(np.ascontiguousarray(images[batch]))


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images_per_second: float


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    batch_size: int,
    normalize: bool,
    device: torch.device,
    rng: np.random.Generator,
    label: str,
) -> EpochStats:
    model.train()
    n_batches = -(-len(indices) // batch_size)
    log_every = max(1, n_batches // 10)
    total_loss, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    for step, (batch_idx, batch) in enumerate(iter_batches(images, indices, batch_size, rng), start=1):
        if len(batch_idx) == 1 and seen:
            # BatchNorm cannot normalise a batch of one image once the feature map is 1x1 (small images);
            # the image is trained on in another epoch's shuffle.
            break
        x = to_model_input(batch.to(device, non_blocking=True), normalize)
        y = torch.from_numpy(labels[batch_idx]).to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        if step % log_every == 0 or step == n_batches:
            rate = seen / (time.perf_counter() - started)
            logger.info(
                "%s [%d/%d] loss %.4f acc %.4f %.1f img/s",
                label,
                step,
                n_batches,
                total_loss / seen,
                correct / seen,
                rate,
            )
    elapsed = time.perf_counter() - started
    return EpochStats(total_loss / seen, correct / seen, seen / elapsed if elapsed else 0.0)


def recalibrate_batchnorm(
    model: nn.Module, images: np.ndarray, indices: np.ndarray, batch_size: int, normalize: bool, device: torch.device
) -> None:
    """Recompute BatchNorm running statistics as a plain average over ``indices`` with the current weights."""
    batches = (to_model_input(b.to(device), normalize) for _, b in iter_batches(images, indices, batch_size))
    update_bn(batches, model, device=device)


@torch.no_grad()
def predict(
    model: nn.Module, images: np.ndarray, indices: np.ndarray, batch_size: int, normalize: bool, device: torch.device
) -> np.ndarray:
    """Softmax probabilities [len(indices), classes] in the order of ``indices``."""
    model.eval()
    chunks = [
        torch.softmax(model(to_model_input(batch.to(device), normalize)).float(), dim=1).cpu().numpy()
        for _, batch in iter_batches(images, indices, batch_size)
    ]
    return np.concatenate(chunks) if chunks else np.empty((0, NUM_CLASSES), dtype=np.float32)
