"""``cxrtl bench``: our training step side by side with its compute bound and with the study's way, in one
process on whatever device is present, plus the data paths alone and a checkpoint write to the store.

1. compute bound: forward + backward + optimizer step on one fixed batch already on the device (eager,
   even when ours is compiled);
2. ours: the training step as ``cxrtl train`` runs it (same switches), fed from a preprocessed uint8 array;
3. the study's way: torchvision ImageFolder + PIL + Resize + ToTensor, a DataLoader with its default workers,
   fp32, no channels-last;
4. the data paths alone (images per second delivered on the device) of 2 and 3;
5. a checkpoint (model + Adam state after a step) written to the store, its time and size;
6. the ratios ours / compute bound, ours / study's way, data path ours / study's.

1 and 2 are timed in alternating rounds of an epoch each, and each figure is its best round.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import resource
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import datasets, transforms

from cxrtl.checkpoints import CheckpointStore
from cxrtl.data import check_image_size
from cxrtl.device import require_compiler
from cxrtl.engine import (
    PREDICT_BATCH_SIZE,
    Batches,
    StepSettings,
    predict,
    resolve_device,
    resolve_precision,
    train_one_epoch,
)
from cxrtl.errors import CxrtlError
from cxrtl.model import build_model
from cxrtl.recipes import PAPER, TrainConfig
from cxrtl.settings import RunSettings
from cxrtl.store import Store

logger = logging.getLogger(__name__)

# Rounds of the compute bound and ours, alternated; each figure is its best round.
ROUNDS = 5
STUDY_SOURCE_SIZE = 299  # the Kaggle dataset's PNGs, which the study resized on the fly


@dataclass
class BenchResult:
    device: str
    precision: str
    channels_last: bool
    compile: bool
    image_size: int
    batch_size: int
    batches: int  # timed, after one warm-up batch each; ours and the compute bound: an epoch of batches + 1
    rounds: int
    compute_bound_images_per_second: float
    ours_images_per_second: float
    ours_first_epoch_seconds: float  # warm-up included: with compile on, the compilation
    study_images_per_second: float
    ours_data_images_per_second: float
    study_data_images_per_second: float
    checkpoint_seconds: float
    checkpoint_mib: float
    # Of ours and the compute bound, before the study's loader and model: the process's peak resident memory,
    # and on a GPU the peak that torch allocated there (None on the CPU, whose activations are host memory).
    peak_host_mib: float
    peak_gpu_mib: float | None
    # cxrtl predict's (and evaluate's) pass over the same images: eval mode, fp32, batches of PREDICT_BATCH_SIZE;
    # run first, so that the process's peak memory then is predict's.
    predict_images_per_second: float
    predict_peak_host_mib: float
    store: str

    @property
    def ratios(self) -> dict[str, float]:
        return {
            "ours_over_compute_bound": self.ours_images_per_second / self.compute_bound_images_per_second,
            "ours_over_study": self.ours_images_per_second / self.study_images_per_second,
            "data_ours_over_study": self.ours_data_images_per_second / self.study_data_images_per_second,
        }

    def as_dict(self) -> dict:
        return {**asdict(self), **self.ratios}

    def table(self) -> str:
        rows = [
            ("compute bound (fixed batch on the device)", f"{self.compute_bound_images_per_second:.1f} img/s"),
            ("ours: cxrtl train's step, preprocessed array", f"{self.ours_images_per_second:.1f} img/s"),
            ("ours: first epoch (warm-up, compilation)", f"{self.ours_first_epoch_seconds:.1f} s"),
            ("study: ImageFolder+PIL+Resize+ToTensor, fp32", f"{self.study_images_per_second:.1f} img/s"),
            ("data path alone, ours", f"{self.ours_data_images_per_second:.1f} img/s"),
            ("data path alone, study's", f"{self.study_data_images_per_second:.1f} img/s"),
            ("checkpoint write to the store", f"{self.checkpoint_seconds:.2f} s, {self.checkpoint_mib:.0f} MiB"),
            ("predict: cxrtl predict's and evaluate's pass", f"{self.predict_images_per_second:.1f} img/s"),
            ("peak memory of predict: host (process RSS)", f"{self.predict_peak_host_mib:.0f} MiB"),
            ("peak memory of ours: host (process RSS)", f"{self.peak_host_mib:.0f} MiB"),
            (
                "peak memory of ours: GPU (torch allocated)",
                "-" if self.peak_gpu_mib is None else f"{self.peak_gpu_mib:.0f} MiB",
            ),
            ("ours / compute bound", f"{self.ratios['ours_over_compute_bound']:.2f}"),
            ("ours / study (end to end)", f"{self.ratios['ours_over_study']:.2f}"),
            ("data path ours / study", f"{self.ratios['data_ours_over_study']:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        head = (
            f"{self.device}, {self.precision}, channels-last {'on' if self.channels_last else 'off'}, "
            f"compile {'on' if self.compile else 'off'}, "
            f"{self.image_size} px, batch {self.batch_size}, {self.batches} timed batches "
            f"(ours and the compute bound: best of {self.rounds} rounds of {self.batches + 1}); store {self.store}"
        )
        return "\n".join([head, *(f"  {name:<{width}}  {value}" for name, value in rows)])


def bench(
    store: Store,
    image_size: int = RunSettings.image_size,
    batch_size: int = PAPER.training.batch_size,
    batches: int = 5,
    device: str = "auto",
    config: TrainConfig | None = None,
) -> BenchResult:
    """Measure each of the module's six figures; ``config`` gives the switches of ours (default: train's)."""
    check_image_size(image_size)
    if batch_size < 2 or batches < 1:
        raise CxrtlError("batch_size must be at least 2 and batches positive")
    config = config or TrainConfig.from_recipe("recommended")
    torch_device = resolve_device(device)
    if config.compile:
        require_compiler(torch_device)
    settings = StepSettings(resolve_precision(config.precision, torch_device), config.channels_last)
    torch.backends.cudnn.benchmark = config.cudnn_benchmark
    n = batch_size * (batches + 1)  # one warm-up batch
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, image_size, image_size), dtype=np.uint8)
    classes = rng.integers(0, 2, size=n)
    criterion = nn.CrossEntropyLoss()

    torch.manual_seed(0)
    model = settings.prepare(build_model().to(torch_device))
    # First, before any training: cxrtl predict's pass (the faster of two: the first warms up), and the memory
    # it needs (the model and its batches).
    predict_batches = Batches(images, classes, np.arange(n), PREDICT_BATCH_SIZE, True, torch_device)
    predict_rate = n / min(_seconds(torch_device, lambda: [predict(model, predict_batches)]) for _ in range(2))
    predict_peak_host_mib = _peak_host_mib()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(torch_device.type) if settings.precision == "fp16" else None
    ours_batches = Batches(images, classes, np.arange(n), batch_size, True, torch_device)
    if config.data_on_device:
        ours_batches = ours_batches.on_device()

    fixed = next(iter(ours_batches))
    net = torch.compile(model) if config.compile else model  # as train runs it

    def compute_epoch() -> Iterable:
        return itertools.islice(_fixed_steps(model, optimizer, criterion, fixed, settings), len(ours_batches))

    def ours_epoch() -> list:
        step = {"step_settings": settings, "scaler": scaler}
        return [train_one_epoch(net, ours_batches, optimizer=optimizer, criterion=criterion, log_prefix="ours", **step)]

    first_epoch = _seconds(torch_device, ours_epoch)
    _seconds(torch_device, compute_epoch)
    # Alternated, the best of each: load from elsewhere on the machine slows some rounds of both alike,
    # where one timing of each, one after the other, gave ratios from 0.92 to 1.22 on an idle CPU.
    compute_s = ours_s = math.inf
    for _ in range(ROUNDS):
        compute_s = min(compute_s, _seconds(torch_device, compute_epoch))
        ours_s = min(ours_s, _seconds(torch_device, ours_epoch))
    compute, ours = n / compute_s, n / ours_s
    ours_data = _rate(torch_device, batch_size, batches, lambda: (x for x, _ in ours_batches))
    checkpoint_s, checkpoint_mib = _checkpoint(store, model, optimizer)
    peak_host_mib = _peak_host_mib()
    peak_gpu_mib = torch.cuda.max_memory_allocated(torch_device) / 2**20 if torch_device.type == "cuda" else None

    with tempfile.TemporaryDirectory(prefix="cxrtl-bench-") as tmp:
        loader = _study_loader(Path(tmp), images, classes, image_size, batch_size)
        study_data = _rate(torch_device, batch_size, batches, lambda: (x.to(torch_device) for x, _ in loader))
        study_model = build_model().to(torch_device)  # fp32, contiguous, as the study ran
        study_optimizer = torch.optim.Adam(study_model.parameters(), lr=1e-4)
        study = _rate(
            torch_device, batch_size, batches, lambda: _study_steps(study_model, study_optimizer, criterion, loader)
        )
    return BenchResult(
        device=str(torch_device),
        precision=settings.precision,
        channels_last=settings.channels_last,
        compile=config.compile,
        image_size=image_size,
        batch_size=batch_size,
        batches=batches,
        rounds=ROUNDS,
        compute_bound_images_per_second=compute,
        ours_images_per_second=ours,
        ours_first_epoch_seconds=first_epoch,
        study_images_per_second=study,
        ours_data_images_per_second=ours_data,
        study_data_images_per_second=study_data,
        checkpoint_seconds=checkpoint_s,
        checkpoint_mib=checkpoint_mib,
        peak_host_mib=peak_host_mib,
        peak_gpu_mib=peak_gpu_mib,
        predict_images_per_second=predict_rate,
        predict_peak_host_mib=predict_peak_host_mib,
        store=store.url,
    )


def _peak_host_mib() -> float:
    """The process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(device: torch.device, run: Callable[[], Iterable]) -> float:
    """Seconds to run ``run`` through, the device's queued work included."""
    _sync(device)
    started = time.perf_counter()
    list(run())
    _sync(device)
    return time.perf_counter() - started


def _rate(device: torch.device, batch_size: int, batches: int, run: Callable[[], Iterable]) -> float:
    """Images per second over ``batches`` batches of what ``run`` yields (one per batch), after the first."""
    items = iter(run())
    next(items)  # warm-up
    _sync(device)
    started, done = time.perf_counter(), 0
    for _ in items:
        done += 1
        if done == batches:
            break
    _sync(device)
    return batch_size * done / (time.perf_counter() - started)


def _fixed_steps(model, optimizer, criterion, batch, settings: StepSettings):
    """The compute bound: the same batch, already on the device, stepped on again and again."""
    x, y = batch
    x = settings.input(x)
    model.train()
    while True:
        optimizer.zero_grad(set_to_none=True)
        with settings.autocast(x.device):
            loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        yield


def _study_loader(root: Path, images: np.ndarray, classes: np.ndarray, size: int, batch_size: int):
    """The study's input pipeline over the same images written as PNGs at the dataset's size, one folder
    per class: ImageFolder, PIL, Resize, ToTensor, a shuffling DataLoader with its default workers."""
    for i, (pixels, label) in enumerate(zip(images, classes, strict=True)):
        folder = root / ("COVID" if label else "Normal")
        folder.mkdir(exist_ok=True)
        big = Image.fromarray(pixels).resize((STUDY_SOURCE_SIZE, STUDY_SOURCE_SIZE))
        big.save(folder / f"{i}.png")
    dataset = datasets.ImageFolder(
        str(root), transform=transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    )
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)


def _study_steps(model, optimizer, criterion, loader):
    device = next(model.parameters()).device
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        yield loss.item()  # the study's loop read the loss each step


def _checkpoint(store: Store, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[float, float]:
    """Seconds and MiB of one checkpoint as train writes it (model and Adam state), to ``store``; removed after."""
    checkpoints = CheckpointStore(store, f"bench-{time.strftime('%Y%m%d-%H%M%S')}", "bench", {"bench": time.time()})
    payload = {"epoch": 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "best": {"epoch": 1}}
    started = time.perf_counter()
    checkpoints.save(1, payload)
    seconds = time.perf_counter() - started
    checkpoints.reset()
    serialized = io.BytesIO()
    torch.save(payload, serialized)
    return seconds, serialized.tell() / 2**20
