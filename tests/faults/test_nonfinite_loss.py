"""A loss that turns NaN or infinite stops training: one error line naming the epoch and the step, and no model."""

from __future__ import annotations

import pytest
import torch
from refusal import one_error_line

from cxrtl.checkpoints import run_training_prefix
from cxrtl.cli import main
from cxrtl.store import LocalStore
from cxrtl.weights import put_weights, write_stand_in

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def overflowing_store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """imagenet weights that are finite (weights check takes them) but so large that the first forward overflows."""
    root = tmp_path_factory.mktemp("overflow")
    path = write_stand_in("imagenet", root / "imagenet.pth")
    state = torch.load(path, weights_only=True)
    torch.save({k: v * 1e30 if v.is_floating_point() else v for k, v in state.items()}, path)
    store = LocalStore(root / "store")
    put_weights(store, "imagenet", path, stand_in=True)
    return store


@pytest.mark.slow
def test_a_non_finite_loss_stops_training_at_its_step_and_writes_nothing(overflowing_store, prepared, tmp_path, capsys):
    out = tmp_path / "model"
    argv = [
        "-q", "train", "--data", str(prepared["paper"]), "--weights", "imagenet", "--out", str(out),
        "--store", str(overflowing_store.root), "--run-id", "nan-loss", "--epochs", "2", "--batch-size", "8",
        "--device", "cpu", "--checkpoint-minutes", "0",
    ]  # fmt: skip
    status = main(argv)
    one_error_line(
        status,
        capsys.readouterr().err,
        naming=["imagenet epoch 1/2", "not finite at step 1", "no model written"],
        nothing_at=[out],
    )
    assert overflowing_store.list("models/imagenet/nan-loss/") == []
    # the epoch never ended: nothing to checkpoint (the run's identity was claimed before it began)
    assert overflowing_store.list("runs/nan-loss/") == ["runs/nan-loss/imagenet/identity.json"]
    assert not overflowing_store.list(f"{run_training_prefix(overflowing_store, 'nan-loss', 'imagenet')}checkpoints/")
