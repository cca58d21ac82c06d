"""Issue 14, runs: run ids checked before any work, one run id holds one set of settings, a finished run
is not rewritten with fewer epochs, atomically written files get the mode of any new file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from refusal import refused

from cxrtl.checkpoints import CheckpointStore
from cxrtl.errors import CxrtlError
from cxrtl.files import atomic_file
from cxrtl.recipes import TrainConfig
from cxrtl.store import LocalStore, keys
from cxrtl.train import train

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("run_id", ["../../escape", "a/b", ".hidden", "", "x" * 129])
def test_bad_run_ids_are_refused_before_any_work(tmp_path: Path, run_id: str, capsys):
    with pytest.raises(CxrtlError, match=r"^run id must be"):
        train(tmp_path / "no-data", "imagenet", tmp_path / "model", TrainConfig.from_recipe("paper"), None, run_id)
    refused(
        capsys,
        ["train", "--data", "x", "--weights", "imagenet", "--out", str(tmp_path / "m"), "--run-id", run_id],
        naming=("--run-id",),
        nothing_at=(tmp_path / "m",),
    )


def test_a_second_claim_with_other_settings_gets_the_first(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    first = CheckpointStore(store, "run-1", "imagenet", {"settings": {"learning_rate": 0.001}})
    assert first.claim() == {"settings": {"learning_rate": 0.001}}
    second = CheckpointStore(store, "run-1", "imagenet", {"settings": {"learning_rate": 0.1}})
    assert second.claim() == {"settings": {"learning_rate": 0.001}}
    assert not store.list(keys.training_prefix("imagenet", second.training))  # nor is its training claimed


def test_a_run_that_lost_its_claim_in_a_race_stops_at_its_first_save(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    mine = CheckpointStore(store, "run-1", "imagenet", {"settings": {"learning_rate": 0.001}})
    mine.claim()
    store.put_json(keys.run_identity_key("run-1", "imagenet"), {"settings": {"learning_rate": 0.1}})  # the other
    with pytest.raises(CxrtlError, match=r"^run run-1: another run of imagenet with other settings took this run id"):
        mine.save(1, {"best": {"epoch": 1}})
    assert not store.list(keys.checkpoints_prefix("imagenet", mine.training))


@pytest.mark.slow  # trains
def test_one_run_id_trains_one_set_of_settings_and_never_fewer_epochs(prepared, stand_in_store, tmp_path: Path):
    data, run_id = prepared["paper"], "fault-suite-run"
    config = TrainConfig.from_recipe("paper", epochs=2, batch_size=16, device="cpu")
    train(data, "imagenet", tmp_path / "first", config, stand_in_store, run_id)
    assert json.loads((tmp_path / "first" / "model.json").read_text())["config"]["epochs"] == 2

    other = TrainConfig.from_recipe("paper", epochs=2, batch_size=16, device="cpu", learning_rate=0.01)
    with pytest.raises(CxrtlError, match=rf"^run {run_id} was started with learning_rate=0.001, not 0.01"):
        train(data, "imagenet", tmp_path / "other", other, stand_in_store, run_id)
    fewer = TrainConfig.from_recipe("paper", epochs=1, batch_size=16, device="cpu")
    with pytest.raises(CxrtlError, match=rf"^run {run_id}: imagenet has trained 2 epochs already, more than epochs=1"):
        train(data, "imagenet", tmp_path / "fewer", fewer, stand_in_store, run_id)
    assert not (tmp_path / "other").exists() and not (tmp_path / "fewer").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_atomically_written_files_get_0666_less_the_umask(tmp_path: Path):
    old = os.umask(0o027)
    try:
        target = tmp_path / "file.json"
        with atomic_file(target) as part:
            part.write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
