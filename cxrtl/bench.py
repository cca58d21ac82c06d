"""``cxrtl bench``: training and inference speed and peak memory of the study's model on this machine."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from cxrtl.data import check_image_size
from cxrtl.engine import predict, resolve_device, train_one_epoch
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
    labels = rng.integers(0, 2, size=n + batch_size)
    model = build_model().to(torch_device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    warm_up, timed = np.arange(n, n + batch_size), np.arange(n)
    args = (model, optimizer, criterion, images, labels)
    train_one_epoch(*args, warm_up, batch_size, False, torch_device, rng, "warm-up")
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    stats = train_one_epoch(*args, timed, batch_size, False, torch_device, rng, "bench")
    started = time.perf_counter()
    predict(model, images, timed, batch_size, False, torch_device)
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
