"""One epoch of training, and predictions: the loops shared by train and evaluate."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from cxrtl.data import PreparedData
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


@dataclass(frozen=True)
class Batches:
    """Some of a dataset's images in batches, as the network takes them.

    ``images`` and ``classes`` cover the whole dataset; ``indices`` picks the images, in their order.
    """

    images: np.ndarray  # uint8 [N, S, S]
    classes: np.ndarray  # int64 [N]
    indices: np.ndarray
    batch_size: int
    normalize: bool  # ImageNet statistics on the input (cxrtl.transforms)
    device: torch.device

    @classmethod
    def of(cls, data: PreparedData, split: str, batch_size: int, normalize: bool, device: torch.device) -> Batches:
        return cls(data.images, data.labels, data.indices(split), batch_size, normalize, device)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def shuffled(self, rng: np.random.Generator) -> Batches:
        return dataclasses.replace(self, indices=rng.permutation(self.indices))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(network input, classes) per batch, on the device."""
        for start in range(0, len(self.indices), self.batch_size):
            batch = self.indices[start : start + self.batch_size]
            pixels = torch.from_numpy(np.ascontiguousarray(self.images[batch]))
            x = to_model_input(pixels.to(self.device, non_blocking=True), self.normalize)
            yield x, torch.from_numpy(self.classes[batch]).to(self.device)


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images_per_second: float


def train_one_epoch(
    model: nn.Module,
    batches: Batches,
    *,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    log_prefix: str,
) -> EpochStats:
    """One pass over ``batches`` (shuffle them first), logging progress about ten times under ``log_prefix``."""
    model.train()
    n_batches = len(batches)
    log_every = max(1, n_batches // 10)
    total_loss, correct, seen = 0.0, 0, 0
    started = time.perf_counter()
    for step, (x, y) in enumerate(batches, start=1):
        if len(y) == 1 and seen:
            # BatchNorm cannot normalise a batch of one image once the feature map is 1x1 (small images);
            # the image is trained on in another epoch's shuffle.
            break
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
                log_prefix,
                step,
                n_batches,
                total_loss / seen,
                correct / seen,
                rate,
            )
    elapsed = time.perf_counter() - started
    return EpochStats(total_loss / seen, correct / seen, seen / elapsed if elapsed else 0.0)


def recalibrate_batchnorm(model: nn.Module, batches: Batches) -> None:
    """Recompute BatchNorm running statistics as a plain average over ``batches`` with the current weights."""
    update_bn((x for x, _ in batches), model, device=batches.device)


@torch.no_grad()
def predict(model: nn.Module, batches: Batches) -> np.ndarray:
    """Softmax probabilities [images, classes] in the order of ``batches``."""
    model.eval()
    chunks = [torch.softmax(model(x).float(), dim=1).cpu().numpy() for x, _ in batches]
    return np.concatenate(chunks) if chunks else np.empty((0, NUM_CLASSES), dtype=np.float32)
