"""``cxrtl bench``: training and inference speed and peak memory of the study's model on this machine."""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from cxrtl.data import check_image_size
from cxrtl.engine import Batches, predict, resolve_device, train_one_epoch
from cxrtl.errors import CxrtlError
from cxrtl.model import build_model


@dataclass
class BenchResult:
    device: str
    image_size: int
    batch_size: int
    images: int
    train_images_per_second: float
    predict_images_per_second: float
    peak_memory_mib: float  # GPU memory on CUDA, resident set size on CPU

    def as_dict(self) -> dict:
        return asdict(self)


def bench(image_size: int = 224, batch_size: int = 32, batches: int = 5, device: str = "auto") -> BenchResult:
    """Time one epoch of ``batches`` batches of random images through train and predict, after a warm-up batch."""
    check_image_size(image_size)
    if batch_size < 1 or batches < 1:
        raise CxrtlError("batch_size and batches must be positive")
    torch_device = resolve_device(device)
    rng = np.random.default_rng(0)
    n = batch_size * batches
    images = rng.integers(0, 256, size=(n + batch_size, image_size, image_size), dtype=np.uint8)
    classes = rng.integers(0, 2, size=n + batch_size)
    model = build_model().to(torch_device)
    optimizer, criterion = torch.optim.Adam(model.parameters(), lr=1e-3), nn.CrossEntropyLoss()
    warm_up = Batches(images, classes, np.arange(n, n + batch_size), batch_size, False, torch_device)
    timed = dataclasses.replace(warm_up, indices=np.arange(n))
    train_one_epoch(model, warm_up.shuffled(rng), optimizer=optimizer, criterion=criterion, log_prefix="warm-up")
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    stats = train_one_epoch(model, timed.shuffled(rng), optimizer=optimizer, criterion=criterion, log_prefix="bench")
    started = time.perf_counter()
    predict(model, timed)
    if torch_device.type == "cuda":
        torch.cuda.synchronize(torch_device)
        peak = torch.cuda.max_memory_allocated(torch_device) / 2**20
    else:
        # ru_maxrss is KiB on Linux, bytes on macOS.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return BenchResult(
        device=str(torch_device),
        image_size=image_size,
        batch_size=batch_size,
        images=n,
        train_images_per_second=stats.images_per_second,
        predict_images_per_second=n / (time.perf_counter() - started),
        peak_memory_mib=peak,
    )
