"""A loss that turns NaN or infinite stops training: one error line naming the epoch and the step, and no model."""

from __future__ import annotations

import pytest
from refusal import one_error_line

from cxrtl.cli import main

pytestmark = pytest.mark.faults


def test_a_far_too_large_learning_rate_stops_at_the_first_non_finite_loss_and_writes_no_model(
    stand_in_store, prepared, tmp_path, capsys
):
    out = tmp_path / "model"
    argv = [
        "-q", "train", "--data", str(prepared["paper"]), "--weights", "imagenet", "--out", str(out),
        "--store", str(stand_in_store.root), "--run-id", "nan-loss", "--epochs", "2", "--batch-size", "8",
        "--lr", "1e30", "--device", "cpu", "--checkpoint-minutes", "0",
    ]  # fmt: skip
    status = main(argv)
    # Step 1's loss is finite (computed before the first update), which throws the weights to +-1e30.
    one_error_line(
        status,
        capsys.readouterr().err,
        naming=["imagenet epoch 1/2", "not finite at step 2", "no model written"],
        nothing_at=[out],
    )
    assert stand_in_store.list("models/imagenet/nan-loss/") == []
    assert stand_in_store.list("runs/nan-loss/") == []  # the epoch never ended: nothing to checkpoint
