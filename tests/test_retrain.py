"""Scheduled retraining: a run retrains only when the dataset, the code or the settings changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import cxrtl
from cxrtl.cli import main
from cxrtl.data import PreparedData
from cxrtl.errors import CxrtlError
from cxrtl.retrain import (
    check_for_changes,
    code_fingerprint,
    last_success,
    record_success,
    run_fingerprint,
    sources_to_train,
    weights_fingerprint,
)
from cxrtl.settings import RunSettings
from cxrtl.store import LocalStore
from cxrtl.weights import write_stand_in

SETTINGS = {"sources": ["imagenet", "moco-v2"], "recipe": "recommended", "epochs": 20, "image_size": 224}
WEIGHTS = {"imagenet": "a" * 64, "moco-v2": "b" * 64}


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture(scope="module")
def dataset(prepared) -> dict:
    """The dataset record ingest wrote: slug, version and sha256 of the raw archive."""
    return PreparedData.load(prepared["recommended"]).info.dataset


def test_fingerprint_holds_dataset_code_and_settings(dataset):
    fingerprint = run_fingerprint(dataset, SETTINGS, WEIGHTS)
    assert fingerprint == {
        "dataset_version": dataset["version"],
        "dataset_sha256": dataset["sha256"],
        "weights": WEIGHTS,
        "code": code_fingerprint(),
        "settings": SETTINGS,
    }
    assert len(dataset["sha256"]) == 64 and dataset["version"]
    assert fingerprint["code"].startswith(f"{cxrtl.__version__}+")


def test_first_run_is_a_change_and_its_success_is_recorded(store, dataset):
    check = check_for_changes(store, run_fingerprint(dataset, SETTINGS, WEIGHTS), "run-1")
    assert check.changed and check.reason == "no earlier successful run"
    assert last_success(store) is None  # not before the run has succeeded
    record_success(store, "run-1")
    last = last_success(store)
    assert last["run_id"] == "run-1" and last["fingerprint"] == run_fingerprint(dataset, SETTINGS, WEIGHTS)
    assert last["finished_at"].endswith("Z") and store.exists("state/last-success.json")


def test_unchanged_dataset_code_and_settings_is_no_change(store, dataset):
    check_for_changes(store, run_fingerprint(dataset, SETTINGS, WEIGHTS), "run-1")
    record_success(store, "run-1")
    check = check_for_changes(store, run_fingerprint(dataset, SETTINGS, WEIGHTS), "run-2")
    assert not check.changed
    assert "since run run-1" in check.reason and "nothing to retrain" in check.reason
    assert dataset["version"] in check.reason and code_fingerprint() in check.reason


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sha256": "0" * 64}, "dataset_sha256"),
        ({"version": "v999"}, "dataset_version"),
    ],
)
def test_a_dataset_change_is_named(store, dataset, change, field):
    check_for_changes(store, run_fingerprint(dataset, SETTINGS, WEIGHTS), "run-1")
    record_success(store, "run-1")
    check = check_for_changes(store, run_fingerprint({**dataset, **change}, SETTINGS, WEIGHTS), "run-2")
    assert check.changed
    assert check.reason == f"changed since run run-1: {field}"


def test_a_code_or_settings_change_is_named(store, dataset):
    fingerprint = run_fingerprint(dataset, SETTINGS, WEIGHTS)
    check_for_changes(store, fingerprint, "run-1")
    record_success(store, "run-1")
    code = check_for_changes(store, {**fingerprint, "code": fingerprint["code"] + "-edited"}, "run-2")
    assert code.changed and code.reason == "changed since run run-1: code"
    settings = check_for_changes(store, run_fingerprint(dataset, {**SETTINGS, "epochs": 30}, WEIGHTS), "run-3")
    assert settings.changed and settings.reason == "changed since run run-1: settings"


def test_code_fingerprint_follows_the_sources(tmp_path, monkeypatch):
    """Computed over a copy of the package: the same files give the same fingerprint, an edit another."""
    package = Path(cxrtl.__file__).parent
    copy = tmp_path / "cxrtl"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = code_fingerprint()
    monkeypatch.setattr(cxrtl, "__file__", str(copy / "__init__.py"))
    assert code_fingerprint() == original

    (copy / "metrics.py").write_text((copy / "metrics.py").read_text() + "\n# an edit\n")
    edited = code_fingerprint()
    assert edited != original and edited.startswith(f"{cxrtl.__version__}+")
    (copy / "new_module.py").write_text("")
    assert code_fingerprint() not in (original, edited)


def test_force_retrains_even_when_nothing_changed(store, dataset):
    check_for_changes(store, run_fingerprint(dataset, SETTINGS, WEIGHTS), "run-1")
    record_success(store, "run-1")
    check = check_for_changes(store, run_fingerprint(dataset, SETTINGS, WEIGHTS), "run-2", force=True)
    assert check.changed and check.reason == "retraining forced"


def test_a_failed_run_does_not_become_the_baseline(store, dataset):
    """Only record_success moves the baseline: a run that checked and then failed is compared against again."""
    check_for_changes(store, run_fingerprint(dataset, SETTINGS, WEIGHTS), "run-1")
    record_success(store, "run-1")
    new_data = {**dataset, "sha256": "1" * 64, "version": "v6"}
    assert check_for_changes(store, run_fingerprint(new_data, SETTINGS, WEIGHTS), "run-2").changed  # run-2 then fails
    retry = check_for_changes(store, run_fingerprint(new_data, SETTINGS, WEIGHTS), "run-3")
    assert retry.changed and "since run run-1" in retry.reason
    record_success(store, "run-3")
    assert not check_for_changes(store, run_fingerprint(new_data, SETTINGS, WEIGHTS), "run-4").changed
    assert last_success(store)["run_id"] == "run-3"


def test_a_new_weight_file_for_one_source_is_a_change_naming_that_source(stand_in_store, dataset, tmp_path):
    store = LocalStore(tmp_path / "store")
    shutil.copytree(stand_in_store.root, store.root)
    sources = ["imagenet", "moco-v2"]

    def fingerprint() -> dict:
        return run_fingerprint(dataset, SETTINGS, weights_fingerprint(store, sources))

    assert fingerprint()["weights"] == {s: store.get_json(f"weights/{s}/current.json")["sha256"] for s in sources}
    check_for_changes(store, fingerprint(), "run-1")
    record_success(store, "run-1")
    assert not check_for_changes(store, fingerprint(), "run-2").changed

    other = write_stand_in("imagenet", tmp_path / "imagenet-2.pth", seed=1)
    assert main(["weights", "put", "imagenet", str(other), "--stand-in", "--store", store.url]) == 0
    check = check_for_changes(store, fingerprint(), "run-3")
    assert check.changed and check.reason == "changed since run run-1: weights of imagenet"


def test_a_source_without_weights_is_fingerprinted_as_none(store):
    assert weights_fingerprint(store, ["imagenet"]) == {"imagenet": None}


def test_recording_a_success_again_changes_nothing(store, dataset):
    """A retried report step (after a crash at any point of record_success) ends as one that ran once."""
    check_for_changes(store, run_fingerprint(dataset, SETTINGS, WEIGHTS), "run-1")
    record_success(store, "run-1")
    first = last_success(store)
    record_success(store, "run-1")
    assert last_success(store) == first
    assert not store.exists("state/runs/run-1.json")


def test_recording_a_run_that_never_checked_is_an_error(store):
    with pytest.raises(CxrtlError, match=r"state/runs/ghost\.json"):
        record_success(store, "ghost")
    assert last_success(store) is None


def _settings(**changes):
    return {
        "sources": ["imagenet", "moco-v2"],
        "recipe": "paper",
        "image_size": 224,
        "epochs": 0,
        "batch_size": 0,
        "learning_rate": 0.0,
        "seed": 0,
        **changes,
    }


def test_good_settings_pass_the_check():
    settings = RunSettings.from_pipeline(**_settings())
    assert (settings.epochs, settings.batch_size, settings.learning_rate) == (None, None, None)  # the recipe's


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"sources": ["imagenet", "nope"]}, "nope"),
        ({"sources": ["imagenet", "imagenet"]}, "more than once"),
        ({"sources": []}, "no weight source"),
        ({"recipe": "fast"}, "fast"),
        ({"image_size": 16}, "image_size"),
        ({"epochs": -1}, "epochs"),
        ({"learning_rate": -0.1}, "learning_rate"),
    ],
)
def test_bad_settings_are_refused_naming_them(changes, named):
    with pytest.raises(CxrtlError, match=named):
        RunSettings.from_pipeline(**_settings(**changes))


# --- weights in the store, checked before any GPU is asked for ---------------------------------------


@pytest.fixture
def weights_store(stand_in_store: LocalStore, tmp_path: Path) -> LocalStore:
    """A copy of the stand-in store (imagenet, moco-v2) in which moco-v2's file failed its last verify."""
    store = LocalStore(tmp_path / "weights-store")
    shutil.copytree(stand_in_store.root, store.root, dirs_exist_ok=True)
    sha256 = store.get_json("weights/moco-v2/current.json")["sha256"]
    record = store.get_json(f"weights/moco-v2/{sha256}.json")
    store.put_json(f"weights/moco-v2/{sha256}.json", {**record, "verified": False})
    return store


def test_sources_with_verified_weights_all_train(stand_in_store: LocalStore):
    assert sources_to_train(stand_in_store, ["moco-v2", "imagenet"]) == (["moco-v2", "imagenet"], [])


def test_missing_or_unverified_weights_fail_with_one_line_saying_what_to_run(weights_store: LocalStore):
    requested = ["imagenet", "moco-v2", "inat2021-supervised", "chexpert"]
    with pytest.raises(CxrtlError) as raised:
        sources_to_train(weights_store, requested)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"no verified weights in {weights_store.url} for 3 of 4 sources (moco-v2, inat2021-supervised, chexpert): "
    )
    # The published files are fetched; a manual download is put under the name it is published as.
    assert f"`cxrtl weights fetch --store {weights_store.url} moco-v2 chexpert`" in message
    assert f"`cxrtl weights put --store {weights_store.url} inat2021-supervised inat2021_supervised_large.pth.tar`" in (
        message
    )
    assert message.endswith("or set the pipeline parameter skip_missing_weights=true to train without them")


def test_skip_missing_weights_trains_the_others_and_names_those_left_out(weights_store: LocalStore, caplog):
    trained, skipped = sources_to_train(weights_store, ["moco-v2", "imagenet", "chexpert"], skip_missing=True)
    assert (trained, skipped) == (["imagenet"], ["moco-v2", "chexpert"])
    assert "training without them" in caplog.text


def test_skipping_cannot_leave_nothing_to_train(weights_store: LocalStore):
    with pytest.raises(CxrtlError, match=r"for any requested source \(moco-v2, chexpert\)") as raised:
        sources_to_train(weights_store, ["moco-v2", "chexpert"], skip_missing=True)
    assert "skip_missing_weights" not in str(raised.value)
