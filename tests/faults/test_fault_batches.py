"""Issue 25, small batches: at 32 px ResNet50's last feature map is 1x1, where BatchNorm cannot normalise one
image. A last batch of one is merged into the batch before it (training and BatchNorm recalibration alike),
and --batch-size 1 is refused at the option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from refusal import PIPELINE, refused

import pipeline
from cxrtl.engine import Batches, recalibrate_batchnorm, train_one_epoch
from cxrtl.model import build_model
from cxrtl.recipes import MIN_BATCH_SIZE

pytestmark = pytest.mark.faults

CPU = torch.device("cpu")


def _seventeen(batch_size: int) -> Batches:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(17, 32, 32), dtype=np.uint8)
    classes = np.array([0, 1] * 8 + [0])
    return Batches(images, classes, np.arange(17), batch_size, True, CPU)


def test_17_images_in_batches_of_8_are_one_batch_of_8_and_one_of_9():
    batches = _seventeen(8)
    assert [len(y) for _, y in batches] == [8, 9] and len(batches) == 2
    assert [len(y) for _, y in batches.skip(1)] == [9]  # a resumed epoch merges the same way
    # An epoch stopped during its last step resumes with no step left, not one of the merged image alone.
    assert [len(y) for _, y in batches.skip(2)] == []
    assert [len(y) for _, y in _seventeen(16)] == [17]
    assert [len(y) for _, y in _seventeen(4)] == [4, 4, 4, 5]


def test_training_and_recalibration_at_32_px_take_a_last_batch_of_one():
    torch.manual_seed(0)
    model = build_model()
    batches = _seventeen(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    stats = train_one_epoch(
        model, batches, optimizer=optimizer, criterion=torch.nn.CrossEntropyLoss(), log_prefix="batch of one"
    )
    assert stats.tally.seen == 17 and stats.tally.steps == 2  # every image trained on, none dropped
    recalibrate_batchnorm(model, batches)  # was: ValueError: Expected more than 1 value per channel
    assert int(model.bn1.num_batches_tracked) > 0


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--data", "d", "--weights", "imagenet", "--out", "o", "--batch-size", "1"],
        ["bench", "--batch-size", "1"],
    ],
)
def test_cxrtl_refuses_a_batch_size_of_one(capsys, argv):
    refused(capsys, argv, naming=("--batch-size", f"at least {MIN_BATCH_SIZE}", "BatchNorm"))


def test_pipeline_run_refuses_a_batch_size_of_one(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", "--demo", "--output", str(out), "--batch-size", "1"]
    refused(capsys, argv, pipeline.main, PIPELINE, naming=("--batch-size", f"at least {MIN_BATCH_SIZE}"))
    assert not out.exists()
