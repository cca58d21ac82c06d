"""Checkpoints keyed by what the training is: the next run with the same data, weights and settings resumes an
unfinished training or takes a finished one's model, whatever its run id; one with any difference never does."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from cxrtl.checkpoints import run_training_prefix, training_id
from cxrtl.engine import EpochStats
from cxrtl.errors import CxrtlError
from cxrtl.recipes import TrainConfig
from cxrtl.store import LocalStore, Store
from cxrtl.train import EpochResult, checkpoint, load_model, open_session, record_epoch, resume, train
from cxrtl.weights import put_weights, write_stand_in

CONFIG = TrainConfig.from_recipe("paper", epochs=2, batch_size=8, device="cpu")
EPOCH = EpochResult(EpochStats(0.5, 0.75, 10.0), select_accuracy=0.6, select_loss=0.7, select_score=0.6)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store of its own: trainings with the same identity in a shared one would resume each other."""
    store = LocalStore(tmp_path / "store")
    stand_in = write_stand_in("imagenet", tmp_path / "imagenet.pth")
    put_weights(store, "imagenet", stand_in, stand_in=True)
    stand_in.unlink()
    return store


@pytest.fixture
def other_dataset(prepared, tmp_path: Path) -> Path:
    """The paper data as if ingested from another release: another dataset sha256, the same images."""
    folder = tmp_path / "other"
    shutil.copytree(prepared["paper"], folder)
    info = json.loads((folder / "info.json").read_text())
    info["dataset"] = {**(info.get("dataset") or {}), "sha256": "0" * 64, "version": "other"}
    (folder / "info.json").write_text(json.dumps(info))
    return folder


def _stopped_after_epoch_1(data: Path, store: Store, run_id: str) -> dict[str, torch.Tensor]:
    """A run that checkpointed epoch 1 and stopped (as if killed): the state it saved."""
    session = open_session(data, "imagenet", CONFIG, store, run_id)
    progress = resume(session)
    with torch.no_grad():  # as if the epoch had trained: a resumed session must load this, not start afresh
        session.model.fc[0].bias.add_(1.0)
    record_epoch(session, progress, 1, EPOCH)
    checkpoint(session, progress)
    return {k: v.clone() for k, v in session.model.state_dict().items()}


@pytest.mark.slow
def test_a_second_run_id_resumes_the_training_a_stopped_run_left(prepared, store, caplog):
    saved = _stopped_after_epoch_1(prepared["paper"], store, "run-a")

    caplog.set_level(logging.INFO, logger="cxrtl.train")
    second = open_session(prepared["paper"], "imagenet", CONFIG, store, "run-b")
    progress = resume(second)
    assert (progress.epoch, progress.resumed_from, progress.best_epoch) == (1, 1, 1)
    assert "imagenet: resuming run run-b from the checkpoint of epoch 1" in caplog.text
    for name, tensor in second.model.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    # One key for both: the training, not the run.
    training = run_training_prefix(store, "run-a", "imagenet")
    assert (
        training
        == run_training_prefix(store, "run-b", "imagenet")
        == f"trainings/imagenet/{second.checkpoints.training}/"
    )
    assert store.get_json(f"{training}owner.json")["run_id"] == "run-b"


def test_the_run_a_training_was_taken_from_stops_at_its_next_save(prepared, store):
    first = open_session(prepared["paper"], "imagenet", CONFIG, store, "run-a")
    progress = resume(first)
    resume(open_session(prepared["paper"], "imagenet", CONFIG, store, "run-b"))  # takes the training over
    with pytest.raises(CxrtlError, match=r"^run run-a: run run-b took over the training of imagenet .*this one stops$"):
        record_epoch(first, progress, 1, EPOCH)
        checkpoint(first, progress)
    assert not store.list(f"{first.checkpoints.training}/checkpoints/")


@pytest.mark.slow
def test_another_dataset_is_another_training_and_never_resumes_this_one(prepared, other_dataset, store):
    _stopped_after_epoch_1(prepared["paper"], store, "run-a")

    other = open_session(other_dataset, "imagenet", CONFIG, store, "run-b")
    assert other.identity["dataset"]["sha256"] == "0" * 64
    assert resume(other).epoch == 0  # a fresh start, under its own key
    assert run_training_prefix(store, "run-b", "imagenet") != run_training_prefix(store, "run-a", "imagenet")

    # The same run id on the other dataset: refused before training, naming the difference.
    same_id = open_session(other_dataset, "imagenet", CONFIG, store, "run-a")
    with pytest.raises(
        CxrtlError,
        match=r"^run run-a was started with dataset\.version='sha256:\w+', not 'other', "
        r"dataset\.sha256='\w{64}', not '0{64}'; start a new run id instead$",
    ):
        resume(same_id)


def test_the_image_size_the_split_and_the_code_version_are_part_of_the_identity(prepared, store):
    identity = open_session(prepared["paper"], "imagenet", CONFIG, store, "run-a").identity
    assert identity["image_size"] == 64 and len(identity["images_sha256"]) == 64
    assert {"dataset", "weights_sha256", "recipe", "settings", "source", "cxrtl_version"} <= set(identity)
    assert "seed" in identity["settings"] and "epochs" not in identity["settings"]  # more epochs may resume
    assert training_id({**identity, "image_size": 32}) != training_id(identity)
    recommended = open_session(prepared["recommended"], "imagenet", CONFIG, store, "run-c").identity
    assert recommended["images_sha256"] != identity["images_sha256"]  # another split of the same images


def test_a_training_whose_identity_file_disagrees_with_its_key_is_refused(prepared, store):
    session = open_session(prepared["paper"], "imagenet", CONFIG, store, "run-a")
    training = session.checkpoints.training
    store.put_json(f"trainings/imagenet/{training}/identity.json", {"source": "imagenet", "edited": True})
    with pytest.raises(CxrtlError, match=r"identity\.json holds another identity than its key says"):
        resume(session)


@pytest.mark.slow
def test_a_finished_training_gives_its_model_to_the_next_run_without_training_again(prepared, store, tmp_path, caplog):
    config = TrainConfig.from_recipe("paper", epochs=1, batch_size=16, device="cpu", checkpoint_minutes=0)
    first = train(prepared["paper"], "imagenet", tmp_path / "first", config, store, "run-a")
    training = run_training_prefix(store, "run-a", "imagenet")
    assert [k.rsplit("/", 1)[1] for k in store.list(training)] == ["done.json", "identity.json", "owner.json"]

    caplog.set_level(logging.INFO, logger="cxrtl.train")
    second = train(prepared["paper"], "imagenet", tmp_path / "second", config, store, "run-b")
    assert "run run-a finished the training with these data, weights and settings" in caplog.text
    assert "epoch 1/1" not in caplog.text  # not trained again
    assert second.metadata.run_id == "run-b" and second.metadata.resumed_from_epoch == 1
    assert second.metadata.history == first.metadata.history
    assert store.exists("models/imagenet/run-b/model.pt")
    a, _ = load_model(tmp_path / "first")
    b, _ = load_model(tmp_path / "second")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name

    # Its model pruned away: the next run trains it again rather than resume without its best model.
    for key in store.list("models/imagenet/"):
        store.delete(key)
    third = train(prepared["paper"], "imagenet", tmp_path / "third", config, store, "run-c")
    assert third.metadata.resumed_from_epoch is None
