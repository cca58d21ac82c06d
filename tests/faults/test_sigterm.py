"""SIGTERM, what Kubernetes sends a pod it stops: training checkpoints after the step under way and exits
non-zero, and resumes exactly; an S3 upload is aborted, leaving no parts on the server."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import signal_at_log
import torch

from cxrtl.checkpoints import get_payload, run_training_prefix
from cxrtl.recipes import TrainConfig
from cxrtl.signals import EXIT_CODE, Terminated, deferred
from cxrtl.store import LocalStore, open_store
from cxrtl.train import load_model, train
from cxrtl.weights import put_weights, write_stand_in

pytestmark = [pytest.mark.faults, pytest.mark.slow]  # trains, several times

RUN_ID = "sigterm-me"
# Guards against a hung process, not speed checks: half an hour, as a machine shared by
# many busy processes (load 17 on 2 cores) took over 5 minutes for a 2-epoch run.
WAIT_S = 1800


def _train_args(data: Path, out: Path, store: str) -> list[str]:
    return [
        "train", "--data", str(data), "--weights", "imagenet", "--out", str(out),
        "--store", store, "--run-id", RUN_ID, "--epochs", "2", "--batch-size", "4", "--seed", "0",
        "--device", "cpu", "--checkpoint-minutes", "60",  # no checkpoint by time: only SIGTERM's
    ]  # fmt: skip


def test_sigterm_mid_epoch_checkpoints_that_step_and_the_rerun_resumes_exactly(prepared, tmp_path):
    store = LocalStore(tmp_path / "store")
    stand_in = write_stand_in("imagenet", tmp_path / "imagenet.pth")
    put_weights(store, "imagenet", stand_in, stand_in=True)
    data, out = prepared["paper"], tmp_path / "model"
    args = _train_args(data, out, str(store.root))

    # Epoch 2's first logged step: the process is inside the epoch, with no checkpoint yet (60 minutes). Sent by
    # the process itself at that line: sent from outside on reading it, on a loaded machine the signal could
    # land after the epoch's last step, and the run would end as finished.
    argv = signal_at_log.argv("TERM", "epoch 2/2 [1/", *args)
    stopped = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S)
    assert stopped.returncode == EXIT_CODE, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1] == "cxrtl: terminated (SIGTERM)"
    assert not out.exists() and store.list("models/") == []
    training = run_training_prefix(store, RUN_ID, "imagenet")
    checkpoints = store.list(f"{training}checkpoints/")
    assert checkpoints == [f"{training}checkpoints/epoch-002.pt"]
    saved = get_payload(store, checkpoints[0])
    assert saved["epoch"] == 1 and saved["partial"]["tally"]["steps"] >= 1
    assert store.list(f"{training}best-") == [f"{training}best-epoch-001.pt"]

    rerun = subprocess.run([sys.executable, "-m", "cxrtl", *args], capture_output=True, text=True, timeout=WAIT_S)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    steps = saved["partial"]["tally"]["steps"]
    assert f"from the checkpoint of epoch 1 and {steps} steps of the next" in rerun.stderr
    assert "epoch 1/2" not in rerun.stderr and f"epoch 2/2 [{steps}/" not in rerun.stderr
    # done: the checkpoints deleted (no --keep-checkpoints); the training's records and the run's identity stay
    assert store.list(f"runs/{RUN_ID}/") == [f"runs/{RUN_ID}/imagenet/identity.json"]
    assert store.list(training) == [f"{training}{name}" for name in ("done.json", "identity.json", "owner.json")]

    # An uninterrupted run in a process of its own (CPU kernels are bit-exact for the same thread set-up).
    straight_store = LocalStore(tmp_path / "straight-store")
    put_weights(straight_store, "imagenet", stand_in, stand_in=True)
    straight_argv = [sys.executable, "-m", "cxrtl", *_train_args(data, tmp_path / "straight", str(straight_store.root))]
    straight_run = subprocess.run(straight_argv, capture_output=True, text=True, timeout=WAIT_S)
    assert straight_run.returncode == 0, straight_run.stderr[-3000:]
    resumed_meta = json.loads((out / "model.json").read_text())
    straight_meta = json.loads((tmp_path / "straight" / "model.json").read_text())
    assert resumed_meta["history"] == straight_meta["history"]
    resumed, _ = load_model(out)
    straight, _ = load_model(tmp_path / "straight")
    differing = [k for k, v in resumed.state_dict().items() if not torch.equal(v, straight.state_dict()[k])]
    assert differing == [], f"{len(differing)} tensors differ, e.g. {differing[:3]}"


def test_ctrl_c_to_the_process_group_mid_epoch_checkpoints_like_sigterm(prepared, tmp_path):
    """Issue 25: Ctrl-C killed training with KeyboardInterrupt and no checkpoint."""
    store = LocalStore(tmp_path / "store")
    put_weights(store, "imagenet", write_stand_in("imagenet", tmp_path / "imagenet.pth"), stand_in=True)
    out = tmp_path / "model"
    # As a terminal's Ctrl-C: SIGINT to the whole process group (a session of its own, so not to pytest's).
    argv = signal_at_log.argv("INT", "epoch 2/2 [1/", *_train_args(prepared["paper"], out, str(store.root)), group=True)
    stopped = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT_S, start_new_session=True)
    assert stopped.returncode == EXIT_CODE, stopped.stderr[-3000:]
    assert stopped.stderr.strip().splitlines()[-1] == "cxrtl: terminated (SIGINT)"
    assert "KeyboardInterrupt" not in stopped.stderr and not out.exists()
    [checkpoint] = store.list(f"{run_training_prefix(store, RUN_ID, 'imagenet')}checkpoints/")
    saved = get_payload(store, checkpoint)
    assert saved["epoch"] == 1 and saved["partial"]["tally"]["steps"] >= 1


def test_sigint_inside_deferred_sets_the_event_as_sigterm_does():
    """The training loop and the checkpoint writes it waits for run inside deferred(): a Ctrl-C there,
    during a checkpoint write too, is a request to stop after the step, not an exception."""
    for signum, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
        with deferred() as stop:
            os.kill(os.getpid(), signum)
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal keeps the first one's name
            assert stop.wait(WAIT_S) and stop.signal_name == name
    # Outside it, Ctrl-C is what it was before: here Python's own handler (a shell's background job starts
    # with SIGINT ignored, and then Python installs none, so the test sets it).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with deferred():
            pass
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(WAIT_S)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_during_an_s3_upload_aborts_it_and_leaves_no_parts(s3_server, s3_env, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(512 << 20)  # 32 parts of 16 MiB
    bucket = s3_env.removeprefix("s3://")
    uploads = s3_server.directory / bucket / "._S3rver_uploads"
    env = {**os.environ, **s3_server.env()}
    argv = [sys.executable, "-m", "cxrtl", "store", "put", "big.bin", str(big), "--store", s3_env]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT_S
        # A part on the server: the client has the upload's id (a signal during the request that starts an
        # upload, before its answer names the id, leaves an empty upload that only the server's clean-up ends).
        # (An upload's folder holds its key and metadata from the start, its parts under their numbers.)
        while not any(p.name.isdigit() for u in s3_server.incomplete_uploads(bucket) for p in (uploads / u).iterdir()):
            assert process.poll() is None, f"put ended ({process.returncode}) before an upload was seen"
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == EXIT_CODE, err[-3000:]
    assert err.strip().splitlines()[-1] == "cxrtl: terminated (SIGTERM)"
    assert s3_server.incomplete_uploads(bucket) == []
    assert open_store(s3_env).list("") == []


class _SigtermAtFirstStep(logging.Handler):
    """Sends this process SIGTERM when training logs its first step, once."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.sent and "epoch 1/2 [1/" in record.getMessage():
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_in_the_first_epoch_checkpoints_before_any_best_model_and_resumes(stand_in_store, prepared, tmp_path):
    config = TrainConfig.from_recipe("paper", epochs=2, batch_size=4, checkpoint_minutes=60, device="cpu")
    engine_logger, handler = logging.getLogger("cxrtl.engine"), _SigtermAtFirstStep()
    level = engine_logger.level
    engine_logger.addHandler(handler)
    engine_logger.setLevel(logging.INFO)
    try:
        with pytest.raises(Terminated):
            train(prepared["paper"], "imagenet", tmp_path / "model", config, stand_in_store, "sigterm-first")
    finally:
        engine_logger.removeHandler(handler)
        engine_logger.setLevel(level)
    assert handler.sent and not (tmp_path / "model").exists()
    training = run_training_prefix(stand_in_store, "sigterm-first", "imagenet")
    assert stand_in_store.list(training) == [
        f"{training}checkpoints/epoch-001.pt",
        f"{training}identity.json",
        f"{training}owner.json",
    ]
    saved = get_payload(stand_in_store, f"{training}checkpoints/epoch-001.pt")
    assert saved["epoch"] == 0 and saved["best"]["epoch"] == 0 and saved["partial"]["tally"]["steps"] >= 1

    result = train(prepared["paper"], "imagenet", tmp_path / "model", config, stand_in_store, "sigterm-first")
    assert result.metadata.resumed_from_epoch == 0 and len(result.metadata.history["train_loss"]) == 2
    assert not stand_in_store.list(f"{training}checkpoints/")
    for key in stand_in_store.list("models/imagenet/sigterm-first/") + stand_in_store.list(training):
        stand_in_store.delete(key)
