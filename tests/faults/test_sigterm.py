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
from cxrtl.model import build_model
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


def test_sigterm_mid_epoch_checkpoints_that_step_and_the_rerun_resumes_from_it(prepared, tmp_path):
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

    # Epoch 1 is the stopped process's, its history carried over, not trained again. That the rest goes on
    # exactly as an uninterrupted run is checked within one process (test_a_stopped_run_resumed_ends_...).
    resumed_meta = json.loads((out / "model.json").read_text())
    assert {name: values[:1] for name, values in resumed_meta["history"].items()} == saved["history"]
    assert resumed_meta["resumed_from_epoch"] == 1


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


# Where a run is stopped (the first step it logs after the signal's marker), and whether the checkpoint of
# that partial epoch is then lost, as if a SIGKILL had followed: the rerun resumes from the epoch before.
STOPS = {
    "mid-epoch 1, before any best model": ("epoch 1/2 [1/", False),
    "mid-epoch 2": ("epoch 2/2 [1/", False),
    "at the end of epoch 1": ("epoch 2/2 [1/", True),
}
# A checkpoint at every epoch's end, all kept: the end of epoch 1 stays to resume from.
EXACT_CONFIG = {"epochs": 2, "batch_size": 4, "checkpoint_minutes": 0, "keep_checkpoints": 2, "device": "cpu"}


def _store_with_weights(folder: Path) -> LocalStore:
    """A store of its own (a training done in a shared one would be taken over, not trained again) holding
    the imagenet stand-in, the same bytes every time."""
    store = LocalStore(folder / "store")
    put_weights(store, "imagenet", write_stand_in("imagenet", folder / "imagenet.pth"), stand_in=True)
    return store


def _last_checkpoint(store: LocalStore) -> dict:
    """The training's checkpoint of its last epoch: the network and the optimizer as training left them."""
    return get_payload(store, f"{run_training_prefix(store, RUN_ID, 'imagenet')}checkpoints/epoch-002.pt")


def _differing(a: object, b: object, where: str = "") -> list[str]:
    """Where two checkpoint payloads differ: tensors compared bit for bit, everything else with ==."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} (keys)"]
        return [d for key in a for d in _differing(a[key], b[key], f"{where}/{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differing(x, y, f"{where}/{i}")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return [] if torch.equal(a, b) else [where]
    return [] if a == b else [where]


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory):
    """The same training as the stopped ones, never stopped, in this process: its metadata, its published
    model's state and its last checkpoint."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    config, store = TrainConfig.from_recipe("paper", **EXACT_CONFIG), _store_with_weights(folder)
    result = train(prepared["paper"], "imagenet", folder / "model", config, store, RUN_ID)
    return result.metadata, load_model(folder / "model")[0].state_dict(), _last_checkpoint(store)


@pytest.mark.parametrize("stop", STOPS)
def test_a_stopped_run_resumed_ends_bit_for_bit_where_an_uninterrupted_one_does(
    stop, uninterrupted, prepared, tmp_path, caplog
):
    """The three trainings run in this one process: the same seed gives the same numbers only on the same
    kernel paths, and two processes need not take the same ones (MKL's thread count and each library's
    instruction set each change a CPU run's numbers; two fresh processes once differed from epoch 1 on)."""
    marker, lose_partial = STOPS[stop]
    config, store, out = TrainConfig.from_recipe("paper", **EXACT_CONFIG), _store_with_weights(tmp_path), tmp_path / "m"
    with signal_at_log.sending(signal.SIGTERM, marker) as handler, pytest.raises(Terminated):
        train(prepared["paper"], "imagenet", out, config, store, RUN_ID)
    assert handler.sent and not out.exists()
    training = run_training_prefix(store, RUN_ID, "imagenet")
    stopped_in = int(marker.split()[1].split("/")[0])
    checkpoints = [f"{training}checkpoints/epoch-{epoch:03d}.pt" for epoch in range(1, stopped_in + 1)]
    assert store.list(f"{training}checkpoints/") == checkpoints
    saved = get_payload(store, checkpoints[-1])
    assert saved["epoch"] == stopped_in - 1 and saved["partial"]["tally"]["steps"] >= 1
    if stopped_in == 1:  # no epoch has ended: no best model yet, and the checkpoint says so
        assert saved["best"]["epoch"] == 0 and store.list(f"{training}best-") == []
        # The backbone trains for the rest of epoch 1 (the paper recipe freezes it after): its Adam moments stay.
        assert len(saved["optimizer"]["state"]) == len(saved["optimizer"]["param_groups"][0]["params"])
    if lose_partial:
        store.delete(checkpoints.pop())

    with caplog.at_level(logging.INFO, logger="cxrtl.train"):
        result = train(prepared["paper"], "imagenet", out, config, store, RUN_ID)
    [resumed] = [r.getMessage() for r in caplog.records if "resuming run" in r.getMessage()]
    assert resumed.endswith(f"from the checkpoint of epoch {stopped_in - 1}") == lose_partial  # else: and N steps
    assert result.metadata.resumed_from_epoch == stopped_in - 1
    straight_meta, straight_state, straight_last = uninterrupted
    assert result.metadata.history == straight_meta.history
    assert result.metadata.best_epoch == straight_meta.best_epoch
    assert _differing(load_model(out)[0].state_dict(), straight_state, "published") == []
    # The published model may be epoch 1's, which the stopped run wrote: the last checkpoint holds what the
    # resumed run computed, network and optimizer.
    last = _last_checkpoint(store)
    assert last["epoch"] == 2 and last["partial"] is None
    differing = [
        d for part in ("model", "optimizer", "history") for d in _differing(last[part], straight_last[part], part)
    ]
    assert differing == [], f"{len(differing)} differ, e.g. {differing[:3]}"


def test_a_checkpoint_without_the_moments_of_parameters_that_train_on_resumes_with_a_warning(
    prepared, tmp_path, caplog
):
    """As earlier builds wrote a checkpoint inside epoch 1: the backbone's Adam moments left out."""
    config, store, out = TrainConfig.from_recipe("paper", **EXACT_CONFIG), _store_with_weights(tmp_path), tmp_path / "m"
    with signal_at_log.sending(signal.SIGTERM, "epoch 1/2 [1/"), pytest.raises(Terminated):
        train(prepared["paper"], "imagenet", out, config, store, RUN_ID)
    [key] = store.list(f"{run_training_prefix(store, RUN_ID, 'imagenet')}checkpoints/")
    saved = get_payload(store, key)
    names = [name for name, _ in build_model().named_parameters()]
    saved["optimizer"]["state"] = {i: s for i, s in saved["optimizer"]["state"].items() if names[i].startswith("fc.")}
    torch.save(saved, tmp_path / "old.pt")
    store.put_file(key, tmp_path / "old.pt")

    with caplog.at_level(logging.WARNING, logger="cxrtl.train"):
        result = train(prepared["paper"], "imagenet", out, config, store, RUN_ID)
    kept = len(saved["optimizer"]["state"])
    [warning] = [r.getMessage() for r in caplog.records if "optimizer state" in r.getMessage()]
    assert f"lacks the optimizer state of {len(names) - kept} parameters that still train" in warning
    assert result.metadata.resumed_from_epoch == 0 and len(result.metadata.history["train_loss"]) == 2
