"""Training: every weight source starts from its stored stand-in, one run per recipe, the pieces of a run
alone, checkpoints in the store, bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from refusal import one_error_line
from sklearn.metrics import roc_auc_score

from cxrtl.checkpoints import run_training_prefix
from cxrtl.cli import main
from cxrtl.data import PreparedData
from cxrtl.engine import Batches, EpochStats, predict, recalibrate_batchnorm
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import evaluate
from cxrtl.metrics import youden_threshold
from cxrtl.model import build_model
from cxrtl.recipes import TrainConfig
from cxrtl.records import ModelMetadata
from cxrtl.store import LocalStore, Store, sha256_file
from cxrtl.train import (
    EpochResult,
    TrainResult,
    checkpoint,
    load_model,
    open_session,
    record_epoch,
    resume,
    train,
)
from cxrtl.weights import SOURCE_NAMES, get_source, put_weights, stand_in_backbone, write_stand_in

pytestmark = pytest.mark.slow  # trains ResNet50 runs

CPU = torch.device("cpu")
PARAMETERS = [name for name, _ in build_model().named_parameters()]
BACKBONE_PARAMETERS = [name for name in PARAMETERS if not name.startswith("fc.")]
HEAD_PARAMETERS = [name for name in PARAMETERS if name.startswith("fc.")]


@dataclass
class Run:
    result: TrainResult
    config: TrainConfig
    store: Store
    run_id: str
    data_dir: Path
    out_dir: Path

    @property
    def metadata(self) -> ModelMetadata:
        return self.result.metadata

    def keys(self, prefix: str) -> list[str]:
        return self.store.list(prefix)

    @property
    def training(self) -> str:
        """Where the run's training keeps its checkpoints (keyed by what it is, not by the run id)."""
        return run_training_prefix(self.store, self.run_id, "imagenet")


def _forget(store: Store, run_id: str) -> None:
    """Delete what ``run_id`` left: its training's checkpoints and records, its run records and models."""
    training = run_training_prefix(store, run_id, "imagenet") or "-"
    for key in store.list(training) + store.list(f"runs/{run_id}/") + store.list(f"models/imagenet/{run_id}/"):
        store.delete(key)


def _load(store: Store, key: str, tmp: Path) -> dict[str, Any]:
    path = tmp / key.replace("/", "_")
    store.get_file(key, path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _train_run(tmp_path_factory, store: Store, data_dir: Path, run_id: str, config: TrainConfig) -> Iterator[Run]:
    out = tmp_path_factory.mktemp(run_id)
    result = train(data_dir, "imagenet", out / "model", config, store, run_id)
    yield Run(result, config, store, run_id, data_dir, out / "model")
    # Each run leaves ~1 GB of checkpoints and models; the session's store outlives this module.
    _forget(store, run_id)
    shutil.rmtree(out)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, stand_in_store, prepared) -> Iterator[Run]:
    """Two epochs of the paper recipe from the imagenet stand-in, a checkpoint each, both kept."""
    config = TrainConfig.from_recipe(
        "paper", epochs=2, batch_size=8, keep_checkpoints=2, checkpoint_minutes=0, device="cpu"
    )
    yield from _train_run(tmp_path_factory, stand_in_store, prepared["paper"], "test-train-paper", config)


@pytest.fixture(scope="module")
def recommended_run(tmp_path_factory, stand_in_store, prepared) -> Iterator[Run]:
    """Two epochs of the recommended recipe, a checkpoint each, the newest kept."""
    config = TrainConfig.from_recipe(
        "recommended", epochs=2, batch_size=16, keep_checkpoints=1, checkpoint_minutes=0, device="cpu"
    )
    yield from _train_run(tmp_path_factory, stand_in_store, prepared["recommended"], "test-train-rec", config)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A tmp_path that is emptied afterwards: stand-ins and models are hundreds of MB each."""
    yield tmp_path
    shutil.rmtree(tmp_path)


def _running_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.endswith(("running_mean", "running_var"))}


# --- every weight source --------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCE_NAMES)
def test_each_source_starts_training_from_its_stored_stand_in(source, prepared, scratch):
    """Training's first piece: the source's current file from the store, through its adapter, into the
    network, every backbone tensor bit-identical. (Training itself is the same for every source.)"""
    store = LocalStore(scratch / "store")
    stand_in = write_stand_in(source, scratch / "weights.pth")
    stored = put_weights(store, source, stand_in, stand_in=True)
    stand_in.unlink()  # the train step must get it from the store

    config = TrainConfig.from_recipe("recommended", epochs=1, batch_size=16, device="cpu")
    session = open_session(prepared["recommended"], source, config, store, "ten-sources")

    assert session.source == source
    assert session.weights.sha256 == stored.sha256 == store.get_json(f"weights/{source}/current.json")["sha256"]
    assert session.weights.stand_in is True
    assert session.backbone_tensors == 318
    # Each source's stand-in is drawn under its own seed, so a swapped or skipped tensor differs.
    state = session.model.state_dict()
    for name, tensor in stand_in_backbone(source).items():
        assert torch.equal(state[name], tensor), name
    assert store.list("runs/") == [] and store.list("models/") == []


# --- the paper recipe -----------------------------------------------------------------------------


def test_paper_recipe_fine_tunes_epoch_1_then_trains_the_head_only(paper_run, tmp_path):
    prefix = f"{paper_run.training}checkpoints"
    first, second = (_load(paper_run.store, f"{prefix}/epoch-{e:03d}.pt", tmp_path) for e in (1, 2))
    assert (first["epoch"], second["epoch"]) == (1, 2)
    initial = stand_in_backbone("imagenet")  # what stand_in_store holds

    # Epoch 1 trains the whole network ...
    assert all(not torch.equal(first["model"][n], initial[n]) for n in BACKBONE_PARAMETERS)
    # ... epoch 2 the head only ...
    for name in BACKBONE_PARAMETERS:
        assert torch.equal(first["model"][name], second["model"][name]), name
    for name in HEAD_PARAMETERS:
        assert not torch.equal(first["model"][name], second["model"][name]), name
    # ... while BatchNorm statistics keep updating, as in the study's frozen sessions.
    assert not torch.equal(first["model"]["bn1.running_mean"], second["model"]["bn1.running_mean"])
    assert second["model"]["bn1.num_batches_tracked"] > first["model"]["bn1.num_batches_tracked"]


def test_checkpoints_after_the_freeze_leave_out_the_backbone_s_optimizer_state(paper_run, tmp_path):
    """Adam never reads the state of a parameter without a gradient, and the backbone stays frozen from
    epoch 2 on: epoch 1's checkpoint already leaves its moments out (a resumed run is still exact:
    tests/faults/test_sigterm.py)."""
    saved = _load(paper_run.store, f"{paper_run.training}checkpoints/epoch-001.pt", tmp_path)
    state = saved["optimizer"]["state"]
    assert sorted(PARAMETERS[i] for i in state) == sorted(HEAD_PARAMETERS)
    assert len(saved["optimizer"]["param_groups"][0]["params"]) == len(PARAMETERS)


def test_paper_recipe_selects_the_best_epoch_on_the_test_split(paper_run, tmp_path):
    meta = paper_run.metadata
    training = meta.config.training
    assert meta.selection_split == training.selection_split == "test"
    assert (training.normalize, training.recalibrate_bn, training.freeze_backbone_after) == (False, False, 1)
    history = meta.history["select_accuracy"]
    assert len(history) == 2 and training.selection_metric == "accuracy"
    assert meta.history["select_score"] == history  # the study's rule: test-split accuracy
    assert meta.selection_score == max(history)
    assert meta.validation_threshold is None  # no validation split to choose one on
    assert meta.best_epoch == history.index(max(history)) + 1

    # The saved model is that epoch's state, and its test accuracy is the one selection used.
    best = _load(paper_run.store, f"{paper_run.training}checkpoints/epoch-{meta.best_epoch:03d}.pt", tmp_path)["model"]
    model, _ = load_model(paper_run.out_dir)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best[name]), name
    assert evaluate(paper_run.data_dir, paper_run.out_dir, tmp_path / "eval", device="cpu").metrics[
        "accuracy"
    ] == pytest.approx(meta.selection_score)

    # Without recalibration, the running statistics are not the plain average over the training split.
    data = PreparedData.load(paper_run.data_dir)
    before = _running_stats(model)
    recalibrate_batchnorm(model, Batches.of(data, "train", 8, False, CPU))
    after = _running_stats(model)
    assert any(not torch.allclose(before[k], after[k], rtol=1e-3, atol=1e-4) for k in before)


def test_paper_run_records_what_it_trained_from(paper_run, stand_in_store):
    meta = paper_run.metadata
    assert meta.source == "imagenet"
    assert meta.source_description == get_source("imagenet").description
    assert meta.weights_sha256 == stand_in_store.get_json("weights/imagenet/current.json")["sha256"]
    assert meta.weights_stand_in is True
    assert meta.backbone_tensors_loaded == 318
    assert meta.history["train_loss"] and np.isfinite(meta.history["train_loss"]).all()
    assert len(meta.history["select_loss"]) == len(meta.history["train_loss"])
    assert np.isfinite(meta.history["select_loss"]).all()
    assert (meta.device, meta.device_name, meta.cuda_runtime, meta.cuda_driver) == ("cpu", "cpu", None, None)
    assert meta.image is None  # no CXRTL_IMAGE outside our images
    _, saved = load_model(paper_run.out_dir)
    assert saved == meta


def test_paper_run_keeps_two_checkpoints_and_publishes_the_model(paper_run):
    run, training = paper_run.run_id, paper_run.training
    assert paper_run.keys(f"runs/{run}/") == [f"runs/{run}/imagenet/identity.json"]
    assert paper_run.keys(training) == [
        f"{training}checkpoints/epoch-001.pt",
        f"{training}checkpoints/epoch-002.pt",
        f"{training}done.json",
        f"{training}identity.json",
        f"{training}owner.json",
    ]
    done = paper_run.store.get_json(f"{training}done.json")
    assert done["model_key"] == f"models/imagenet/{run}/model.pt" and done["run_id"] == run
    assert done["model_sha256"] == sha256_file(paper_run.out_dir / "model.pt")
    assert paper_run.keys(f"models/imagenet/{run}/") == [
        f"models/imagenet/{run}/model.json",
        f"models/imagenet/{run}/model.pt",
        f"models/imagenet/{run}/seen.json",  # the images it trained and chose its epoch on (cxrtl.seen)
    ]
    assert paper_run.store.sha256(f"models/imagenet/{run}/model.pt") == sha256_file(paper_run.out_dir / "model.pt")
    assert paper_run.store.get_json(f"models/imagenet/{run}/model.json") == paper_run.metadata.to_dict()
    assert json.loads((paper_run.out_dir / "model.json").read_text()) == paper_run.metadata.to_dict()
    assert paper_run.metadata.run_id == run and paper_run.metadata.resumed_from_epoch is None


# --- the recommended recipe -----------------------------------------------------------------------


def test_recommended_recipe_selects_on_val_roc_auc_with_recalibrated_batchnorm(recommended_run):
    meta = recommended_run.metadata
    training = meta.config.training
    assert meta.selection_split == training.selection_split == "val"
    assert training.selection_metric == "roc_auc"
    assert training.recalibrate_bn and training.normalize and training.class_weighted_loss
    assert training.freeze_backbone_after is None
    ranked = list(zip(meta.history["select_score"], meta.history["select_accuracy"], strict=True))
    assert meta.selection_score == max(ranked)[0] and meta.best_epoch == ranked.index(max(ranked)) + 1

    data = PreparedData.load(recommended_run.data_dir)
    model, _ = load_model(recommended_run.out_dir)
    val = data.indices("val")
    probs = predict(model, Batches.of(data, "val", 16, True, CPU))
    # Training predicted in channels-last memory format, this in the default one: equal up to float noise.
    assert roc_auc_score(data.labels[val], probs[:, 1]) == pytest.approx(meta.selection_score, abs=1e-4)
    # The threshold is Youden's J on validation, recorded with the model.
    assert meta.validation_threshold == pytest.approx(youden_threshold(data.labels[val], probs[:, 1]), abs=1e-4)

    # The saved statistics are the plain average over the training split under the saved weights.
    before = _running_stats(model)
    recalibrate_batchnorm(model, Batches.of(data, "train", 16, True, CPU))
    after = _running_stats(model)
    # Training ran channels-last, this runs contiguous: the kernels round differently (the same tolerance as
    # the paper recipe's check that its statistics are NOT the average).
    for key in before:
        assert torch.allclose(before[key], after[key], rtol=1e-3, atol=1e-4), key


def test_keep_1_leaves_the_newest_checkpoint_and_best_is_dropped_at_the_end(recommended_run, tmp_path):
    run, training = recommended_run.run_id, recommended_run.training
    assert [k for k in recommended_run.keys(training) if "epoch-" in k] == [f"{training}checkpoints/epoch-002.pt"]
    last = _load(recommended_run.store, f"{training}checkpoints/epoch-002.pt", tmp_path)
    assert {"source", "weights_sha256", "recipe", "epoch", "model", "optimizer", "history", "best", "config"} <= set(
        last
    )
    assert last["epoch"] == 2 and len(last["history"]["train_loss"]) == 2
    assert last["best"]["epoch"] == recommended_run.metadata.best_epoch
    assert recommended_run.store.exists(f"models/imagenet/{run}/model.pt")


# --- the pieces of a run, each alone (no training: the recipe runs above are the training) -------------


def test_an_epoch_recorded_and_checkpointed_is_where_a_new_session_resumes_exactly(stand_in_store, prepared):
    run_id = "test-train-pieces"
    # Another seed than paper_run's: the same identity would resume paper_run's training.
    config = TrainConfig.from_recipe("paper", epochs=2, batch_size=8, device="cpu", seed=7)
    first = open_session(prepared["paper"], "imagenet", config, stand_in_store, run_id)
    progress = resume(first)
    assert (progress.epoch, progress.resumed_from, progress.best_state) == (0, None, None)
    with torch.no_grad():  # as if an epoch had trained: a resumed session must load this, not start afresh
        first.model.fc[0].bias.add_(1.0)

    # What train does after an epoch with a checkpoint due.
    result = EpochResult(EpochStats(0.5, 0.75, 10.0), select_accuracy=0.6, select_loss=0.7, select_score=0.6)
    record_epoch(first, progress, 1, result)
    checkpoint(first, progress)
    training = run_training_prefix(stand_in_store, run_id, "imagenet")
    assert stand_in_store.list(training) == [
        f"{training}best-epoch-001.pt",
        f"{training}checkpoints/epoch-001.pt",
        f"{training}identity.json",
        f"{training}owner.json",
    ]
    assert progress.history == {
        "train_loss": [0.5],
        "train_accuracy": [0.75],
        "select_loss": [0.7],
        "select_accuracy": [0.6],
        "select_score": [0.6],
    }
    assert (progress.epoch, progress.best_epoch, progress.best_score) == (1, 1, 0.6)

    second = open_session(prepared["paper"], "imagenet", config, stand_in_store, run_id)
    resumed = resume(second)
    assert (resumed.epoch, resumed.resumed_from, resumed.history, resumed.best) == (
        1,
        1,
        progress.history,
        progress.best,
    )
    saved, loaded = first.model.state_dict(), second.model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name
        assert torch.equal(resumed.best_state[name], tensor), name
    _forget(stand_in_store, run_id)


def test_an_equal_selection_score_goes_to_the_higher_accuracy_then_the_earlier_epoch(stand_in_store, prepared):
    run_id = "test-train-ties"
    config = TrainConfig.from_recipe("recommended", epochs=4, batch_size=8, device="cpu")
    session = open_session(prepared["recommended"], "imagenet", config, stand_in_store, run_id)
    progress = resume(session)
    stats = EpochStats(0.5, 0.75, 10.0)
    for epoch, accuracy, auc in ((1, 0.6, 1.0), (2, 0.9, 1.0), (3, 0.9, 1.0), (4, 1.0, 0.95)):
        result = EpochResult(stats, select_accuracy=accuracy, select_score=auc, select_loss=0.5)
        record_epoch(session, progress, epoch, result)
    assert (progress.best_epoch, progress.best_score) == (2, 1.0)
    _forget(stand_in_store, run_id)


def test_resuming_a_finished_run_takes_the_best_model_from_the_published_one(paper_run):
    meta = paper_run.metadata
    session = open_session(paper_run.data_dir, "imagenet", paper_run.config, paper_run.store, paper_run.run_id)
    progress = resume(session)
    assert (progress.epoch, progress.resumed_from, progress.history) == (2, 2, meta.history)
    assert (progress.best_epoch, progress.best_score) == (meta.best_epoch, meta.selection_score)
    published, _ = load_model(paper_run.out_dir)
    for name, tensor in published.state_dict().items():
        assert torch.equal(progress.best_state[name], tensor), name


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("epochs", 0),
        ("epochs", -2),
        ("batch_size", 0),
        ("keep_checkpoints", -1),
        ("checkpoint_minutes", -1.0),
        ("checkpoint_minutes", float("nan")),
        ("learning_rate", 0.0),
        ("precision", "fp8"),
    ],
)
def test_out_of_range_settings_are_refused_naming_them(option, value):
    with pytest.raises(CxrtlError, match=option):
        TrainConfig.from_recipe("paper", **{option: value})


def test_unknown_settings_and_recipes_are_refused():
    with pytest.raises(CxrtlError, match=r"unknown training option.*epoch_count"):
        TrainConfig.from_recipe("paper", epoch_count=3)
    with pytest.raises(CxrtlError, match="unknown recipe 'fast'"):
        TrainConfig.from_recipe("fast")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("epochs-0", "--epochs: must be positive, got 0"),
        ("epochs-negative", "--epochs: must be positive, got -3"),
        ("unknown-source", "unknown weight source 'resnet'"),
        ("missing-data", "is not a preprocessed dataset"),
        ("no-val-split", "'val' split, which this dataset does not have"),
        ("nothing-stored", "run `cxrtl weights fetch imagenet`"),
    ],
)
def test_cli_bad_input_is_one_error_line_and_exit_2(case, expected, prepared, tmp_path, capsys):
    store = tmp_path / "store"
    out = tmp_path / "model"
    data = prepared["paper"]
    args = {"--data": str(data), "--weights": "imagenet", "--out": str(out), "--store": str(store), "--epochs": "1"}
    if case == "epochs-0":
        args["--epochs"] = "0"
    elif case == "epochs-negative":
        args["--epochs"] = "-3"
    elif case == "unknown-source":
        args["--weights"] = "resnet"
    elif case == "missing-data":
        args["--data"] = str(tmp_path / "no-such-folder")
    elif case == "no-val-split":
        args["--recipe"] = "recommended"
    argv = ["train", *(item for pair in args.items() for item in pair)]

    status = main(argv)
    captured = capsys.readouterr()
    named = [expected, str(tmp_path / "no-such-folder")] if case == "missing-data" else [expected]
    one_error_line(status, captured.err, naming=named, nothing_at=[out, store / "runs", store / "models"])
    assert captured.out == ""


# --- resuming: what may resume, and rerunning a finished run ---------------------------------------


def test_a_run_id_is_not_resumed_under_another_recipe(paper_run, prepared, tmp_path):
    config = TrainConfig.from_recipe("recommended", epochs=3, batch_size=16, device="cpu")
    with pytest.raises(CxrtlError, match=r"started with recipe='paper', not 'recommended'.*new run id"):
        train(prepared["recommended"], "imagenet", tmp_path / "model", config, paper_run.store, paper_run.run_id)
    assert not (tmp_path / "model").exists()
    assert paper_run.keys(f"{paper_run.training}checkpoints/")[-1].endswith("epoch-002.pt")


# A KFP retry of a train task that had finished, or the same command typed again: the run is complete.


def test_rerunning_a_finished_run_gives_back_its_model(paper_run, tmp_path):
    again = train(
        paper_run.data_dir, "imagenet", tmp_path / "model", paper_run.config, paper_run.store, paper_run.run_id
    )
    assert again.metadata.best_epoch == paper_run.metadata.best_epoch
    assert again.metadata.history == paper_run.metadata.history
    first, _ = load_model(paper_run.out_dir)
    second, _ = load_model(tmp_path / "model")
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
