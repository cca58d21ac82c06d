"""One epoch of training, and predictions: the loops shared by train and evaluate."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from cxrtl.data import PreparedData
from cxrtl.device import require_cuda
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
        require_cuda(name)
    return device


@dataclass(frozen=True)
class Batches:
    """Some of a dataset's images in batches, as the network takes them.

    ``images`` and ``classes`` cover the whole dataset; ``indices`` picks the images, in their order.
    """

    images: np.ndarray | torch.Tensor  # uint8 [N, S, S]; a tensor when on the device (on_device)
    classes: np.ndarray  # int64 [N]
    indices: np.ndarray
    batch_size: int
    normalize: bool  # ImageNet statistics on the input (cxrtl.transforms)
    device: torch.device

    @classmethod
    def of(cls, data: PreparedData, split: str, batch_size: int, normalize: bool, device: torch.device) -> Batches:
        return cls(data.images, data.labels, data.indices(split), batch_size, normalize, device)

    def __len__(self) -> int:
        return len(self._bounds()) - 1

    def _bounds(self) -> list[int]:
        """Where each batch starts, then the end. A last batch of one image is merged into the one before:
        BatchNorm cannot train on (or recalibrate from) one image once the feature map is 1x1 (32 px)."""
        n = len(self.indices)
        bounds = [*range(0, n, self.batch_size), n]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
            del bounds[-2]
        return bounds

    def shuffled(self, rng: np.random.Generator) -> Batches:
        return dataclasses.replace(self, indices=rng.permutation(self.indices))

    def skip(self, batches: int) -> Batches:
        """These batches without the first ``batches`` of them, counted by their bounds (the last may be longer)."""
        return dataclasses.replace(self, indices=self.indices[self._bounds()[batches] :])

    def on_device(self, fraction_of_free_memory: float = 0.25) -> Batches:
        """These batches drawn from a copy of the whole image array in GPU memory, when it takes no more than
        ``fraction_of_free_memory`` of what is free; otherwise unchanged (and on the CPU always)."""
        if self.device.type != "cuda" or isinstance(self.images, torch.Tensor):
            return self
        free, _ = torch.cuda.mem_get_info(self.device)
        if self.images.nbytes > fraction_of_free_memory * free:
            logger.info("images (%.0f MiB) stay in host memory: too large for the GPU", self.images.nbytes / 2**20)
            return self
        return dataclasses.replace(self, images=torch.from_numpy(np.asarray(self.images)).to(self.device))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(network input, classes) per batch, on the device; from pinned memory without waiting on a GPU."""
        cuda = self.device.type == "cuda"
        bounds = self._bounds()
        for start, end in itertools.pairwise(bounds):
            batch = self.indices[start:end]
            if isinstance(self.images, torch.Tensor):  # already on the device
                pixels = self.images[torch.from_numpy(batch).to(self.device)]
            else:
                pixels = torch.from_numpy(np.ascontiguousarray(self.images[batch]))
                pixels = (pixels.pin_memory() if cuda else pixels).to(self.device, non_blocking=True)
            x = to_model_input(pixels, self.normalize)
            yield x, torch.from_numpy(self.classes[batch]).to(self.device, non_blocking=True)


class NonFiniteLoss(CxrtlError):
    """The loss became NaN or infinite: the weights are ruined from that step on."""


@dataclass(frozen=True)
class StepSettings:
    """How a training step runs: switches of speed that leave results alone beyond floating-point noise."""

    precision: str = "fp32"  # fp32, bf16 or fp16 (autocast; fp16 with a gradient scaler)
    channels_last: bool = False

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        dtype = self.autocast_dtype
        return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    def prepare(self, model: nn.Module) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto``: bf16 on a GPU that has it, fp16 on another GPU, fp32 on the CPU (where autocast is opt-in)."""
    if requested != "auto":
        return requested
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


@dataclass
class Tally:
    """What an epoch has done so far: steps, and the sums its loss and accuracy come from."""

    steps: int = 0
    loss_sum: float = 0.0  # loss x images
    correct: int = 0
    seen: int = 0


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    images_per_second: float
    tally: Tally = dataclasses.field(default_factory=Tally)
    stopped: bool = False  # stopped early on request (``stop``), with ``tally.steps`` steps done


def train_one_epoch(
    model: nn.Module,
    batches: Batches,
    *,
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    log_prefix: str,
    step_settings: StepSettings = StepSettings(),
    scaler: torch.amp.GradScaler | None = None,
    start: Tally | None = None,
    stop: threading.Event | None = None,
) -> EpochStats:
    """One pass over ``batches`` (shuffle them first), logging progress about ten times under ``log_prefix``.

    ``start`` resumes an epoch after its first ``start.steps`` batches. ``stop``, once set, ends the epoch
    after the step under way. Loss and accuracy are summed on the device and read only when logged, so no
    step waits for the device; a non-finite loss is noted there too and raises :class:`NonFiniteLoss`
    naming its step at the next read.
    """
    model.train()
    start = start or Tally()
    device = batches.device
    n_batches = len(batches)
    log_every = max(1, n_batches // 10)
    sums = torch.tensor([start.loss_sum, float(start.correct)], dtype=torch.float64, device=device)
    first_bad = torch.zeros((), dtype=torch.int64, device=device)
    seen, step = start.seen, start.steps
    started = time.perf_counter()
    stopped = False
    for step, (x, y) in enumerate(batches.skip(start.steps), start=start.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        with step_settings.autocast(device):
            logits = model(step_settings.input(x))
            loss = criterion(logits, y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        loss = loss.detach().float()
        sums += torch.stack([loss * len(y), (logits.argmax(1) == y).sum()]).double()
        first_bad = torch.where((first_bad == 0) & ~torch.isfinite(loss), step, first_bad)
        seen += len(y)
        stopped = stop is not None and stop.is_set()
        if step % log_every == 0 or step == n_batches or stopped:
            loss_sum, correct = _read(sums, first_bad, log_prefix)
            rate = (seen - start.seen) / (time.perf_counter() - started)
            logger.info(
                "%s [%d/%d] loss %.4f acc %.4f %.1f img/s", log_prefix, step, n_batches, loss_sum / seen,
                correct / seen, rate,
            )  # fmt: skip
        if stopped:
            break
    loss_sum, correct = _read(sums, first_bad, log_prefix)
    elapsed = time.perf_counter() - started
    tally = Tally(steps=step, loss_sum=loss_sum, correct=int(correct), seen=seen)
    rate = (seen - start.seen) / elapsed if elapsed else 0.0
    return EpochStats(loss_sum / seen, correct / seen, rate, tally, stopped)


def _read(sums: torch.Tensor, first_bad: torch.Tensor, log_prefix: str) -> tuple[float, float]:
    """The sums on the host (the one wait for the device), after checking that every loss was finite."""
    loss_sum, correct, bad = torch.cat([sums, first_bad.double().view(1)]).tolist()
    if bad:
        raise NonFiniteLoss(f"{log_prefix}: the training loss is not finite at step {int(bad)}; no model written")
    return loss_sum, correct


def recalibrate_batchnorm(model: nn.Module, batches: Batches) -> None:
    """Recompute BatchNorm running statistics as a plain average over ``batches`` with the current weights."""
    update_bn((x for x, _ in batches), model, device=batches.device)


# Evaluate's batch size, which cxrtl predict and cxrtl serve keep: on a CPU another batch size can round a
# probability's last bits differently, and their probabilities are evaluate's bit for bit.
PREDICT_BATCH_SIZE = 64


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: Batches,
    step_settings: StepSettings = StepSettings(),
    done: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Softmax probabilities [images, classes] in the order of ``batches``; ``done`` is told each batch's size."""
    model.eval()
    chunks = []
    with step_settings.autocast(batches.device):
        for x, _ in batches:
            chunks.append(torch.softmax(model(step_settings.input(x)).float(), dim=1).cpu().numpy())
            if done is not None:
                done(len(x))
    return np.concatenate(chunks) if chunks else np.empty((0, NUM_CLASSES), dtype=np.float32)
