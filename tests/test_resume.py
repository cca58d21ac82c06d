"""Resume against a real S3 server: `cxrtl train` is killed mid-run and the same command picks up from the bucket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import signal_at_log

from cxrtl.checkpoints import get_payload, run_training_prefix
from cxrtl.store import open_store
from cxrtl.weights import put_weights, write_stand_in

pytestmark = pytest.mark.slow  # trains twice

RUN_ID = "resume-me"
EPOCHS = 3
# A guard against a hung process, not a speed check: half an hour, as a machine shared by
# many busy processes (load 17 on 2 cores) took over 5 minutes for a 2-epoch run.
RUN_LIMIT_S = 1800


def _train_argv(data: Path, out: Path, store_url: str) -> list[str]:
    return [
        "train", "--data", str(data), "--weights", "imagenet", "--out", str(out),
        "--store", store_url, "--run-id", RUN_ID,
        "--epochs", str(EPOCHS), "--batch-size", "8", "--seed", "0", "--device", "cpu",
        "--checkpoint-minutes", "0",  # a checkpoint every epoch, to kill the run after one
    ]  # fmt: skip


def test_train_killed_mid_run_resumes_from_the_newest_checkpoint_in_the_bucket(s3_server, s3_env, prepared, tmp_path):
    store = open_store(s3_env)
    stand_in = write_stand_in("imagenet", tmp_path / "imagenet.pth")
    put_weights(store, "imagenet", stand_in, stand_in=True)
    data, out = prepared["paper"], tmp_path / "model"
    args = _train_argv(data, out, s3_env)
    env = {**os.environ, **s3_server.env()}
    model_key = f"models/imagenet/{RUN_ID}/model.pt"

    # 1. The run kills itself (no chance to clean up) as soon as epoch 1's checkpoint is in the bucket: killed
    # from outside once the file shows, it could be anywhere later on a loaded machine, past epoch 2's.
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        argv = signal_at_log.argv("KILL", "checkpoint of epoch 1 saved", *args)
        process = subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=RUN_LIMIT_S)
    assert process.returncode == -signal.SIGKILL
    checkpoints = f"{run_training_prefix(store, RUN_ID, 'imagenet')}checkpoints/"
    assert store.list(checkpoints) == [f"{checkpoints}epoch-001.pt"], first_log.read_text()[-3000:]
    assert not store.exists(model_key) and not out.exists()
    assert "resuming" not in first_log.read_text()
    saved = get_payload(store, f"{checkpoints}epoch-001.pt")

    # 2. The same command again: it resumes from epoch 1 and finishes the run.
    rerun = subprocess.run(
        [sys.executable, "-m", "cxrtl", *args], env=env, capture_output=True, text=True, timeout=RUN_LIMIT_S
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming run {RUN_ID} from the checkpoint of epoch 1" in rerun.stderr
    assert "epoch 1/3" not in rerun.stderr  # epoch 1 is not trained again
    assert "epoch 2/3" in rerun.stderr and "epoch 3/3" in rerun.stderr
    assert f"run {RUN_ID}" in rerun.stdout

    metadata = json.loads((out / "model.json").read_text())
    assert metadata["resumed_from_epoch"] == 1 and metadata["run_id"] == RUN_ID
    assert all(len(values) == EPOCHS for values in metadata["history"].values())
    assert store.exists(model_key) and store.get_json(f"models/imagenet/{RUN_ID}/model.json") == metadata
    # done: checkpoints and the best model deleted (no --keep-checkpoints); the run's identity stays
    assert store.list(f"runs/{RUN_ID}/") == [f"runs/{RUN_ID}/imagenet/identity.json"]
    for output in (rerun.stderr, rerun.stdout, first_log.read_text()):
        assert s3_server.secret_key not in output

    # 3. Epoch 1 is the killed process's, its history carried over from the bucket. That a resumed training goes
    # on exactly as an uninterrupted one is checked within one process (tests/faults/test_sigterm.py): two
    # processes need not take the same kernel paths, so their numbers need not agree.
    assert {name: values[:1] for name, values in metadata["history"].items()} == saved["history"]
