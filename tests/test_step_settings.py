"""The switches of speed leave the loss curve alone, beyond floating-point noise, where they apply on the CPU:
channels-last, the device-side sums (against a plain host-side loop), and bf16 autocast (a looser tolerance).

The network is a small one with the layers the switches act on (convolutions, BatchNorm, pooling, a linear
head), learning a problem that any correct step must learn: each class's images are brighter than every image
of the other. A randomly initialised ResNet50 fitting eight noise images is chaotic instead: BatchNorm's weight
and bias gradients are sums that nearly cancel, two kernel choices (or two machines) part ways within a few
steps, and the curve rises and falls with the kernels (on one AMD EPYC it did not drop at all). Here the steps
follow one clear direction, so two kernel choices stay within rounding of each other (measured with one and
two threads: 2e-7 apart with channels-last, 2e-3 with bf16, against tolerances of 1e-4 and 5e-2) and the curve
drops on any machine (measured: to a third; asserted: below half), so that a step that learns nothing fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cxrtl.engine import Batches, StepSettings, train_one_epoch

CPU = torch.device("cpu")
EPOCHS = 4  # of two batches each


def _network() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2),
    )  # fmt: skip


def _batches() -> Batches:
    """Sixteen noise images, class 1's all brighter than class 0's: separable by their mean."""
    rng = np.random.default_rng(0)
    classes = np.tile([0, 1], 8)
    images = (rng.integers(0, 128, size=(16, 32, 32)) + 128 * classes[:, None, None]).astype(np.uint8)
    return Batches(images, classes, np.arange(16), 8, True, CPU)


def _curve(settings: StepSettings) -> list[float]:
    """The per-epoch mean training loss of a fixed model, data and order."""
    torch.manual_seed(0)
    model = settings.prepare(_network())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    curve = []
    for _ in range(EPOCHS):
        stats = train_one_epoch(
            model, _batches(), optimizer=optimizer, criterion=nn.CrossEntropyLoss(), log_prefix="t",
            step_settings=settings,
        )  # fmt: skip
        curve.append(stats.loss)
    return curve


def _host_curve() -> list[float]:
    """The same training with the loss read on the host after every step, as the loop once did."""
    torch.manual_seed(0)
    model = _network()
    optimizer, criterion = torch.optim.SGD(model.parameters(), lr=0.05), nn.CrossEntropyLoss()
    curve = []
    for _ in range(EPOCHS):
        model.train()
        total, seen = 0.0, 0
        for x, y in _batches():
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            seen += len(y)
        curve.append(total / seen)
    return curve


@pytest.fixture(scope="module")
def fp32() -> list[float]:
    return _curve(StepSettings())


def test_device_side_sums_give_the_host_loop_s_loss_curve(fp32):
    assert fp32 == pytest.approx(_host_curve(), rel=1e-6)


def test_channels_last_gives_the_same_loss_curve(fp32):
    assert _curve(StepSettings(channels_last=True)) == pytest.approx(fp32, rel=1e-4)


def test_bf16_autocast_gives_the_same_loss_curve_within_bf16_s_precision(fp32):
    bf16 = _curve(StepSettings(precision="bf16", channels_last=True))
    assert bf16 == pytest.approx(fp32, rel=5e-2)
    assert bf16 != fp32  # autocast did run in bf16


def test_the_loss_curve_drops_so_the_comparisons_can_tell(fp32):
    assert fp32[-1] < 0.5 * fp32[0]
