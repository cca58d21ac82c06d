"""The JSON records: files written before records were versioned still read, upgraded to the current schema;
a damaged record or one of a newer schema is one error naming the file.

tests/records/ holds a model.json, metrics.json, card.json and card.md as the code before versioned
records wrote them (a 2-epoch paper-recipe run on the demo data; its precision interval is undefined); and a
prepared dataset's info.json and evaluate's checks.json in the form the code before their records wrote them
last (``info.json``, ``checks.json``) and first (``*-oldest.json``: no duplicates, collections or masks in the
info; no count of test images trained on in the checks).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from cxrtl.data import PreparedData
from cxrtl.errors import CxrtlError
from cxrtl.promote import card_markdown
from cxrtl.records import (
    ChampionCard,
    DataChecks,
    DuplicateSummary,
    EvaluationResult,
    ModelMetadata,
    ModelSummary,
    PreparedInfo,
)

OLD = Path(__file__).parent / "records"
RECORDS = {"model.json": ModelMetadata, "metrics.json": EvaluationResult, "card.json": ChampionCard}


def _old(name: str) -> dict:
    return json.loads((OLD / name).read_text())


# What schema 2 added to a model's config, and the values a model trained before it ran with.
CONFIG_ADDED_IN_2 = {
    "precision": "fp32",
    "channels_last": False,
    "cudnn_benchmark": False,
    "compile": False,
    "data_on_device": False,
    "checkpoint_minutes": 0.0,
}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_file_from_before_versions_reads_as_the_current_schema_and_round_trips(name):
    old = _old(name)
    assert "schema_version" not in old
    record = RECORDS[name].from_dict(old, name)
    new = record.to_dict()
    assert new["schema_version"] == RECORDS[name].SCHEMA_VERSION
    # Version 2 renamed one field (selection_accuracy) and added others; every other field keeps its value.
    kept = {k: v for k, v in old.items() if k not in ("selection_accuracy", "config", "model", "promotion")}
    assert {k: new[k] for k in kept} == kept
    if "promotion" in old:  # the card's promotion gained its paired test: none for a first champion
        assert new["promotion"] == {**old["promotion"], "test": None, "p_value": None, "images": None}
    assert RECORDS[name].from_dict(new, name).to_dict() == new


def test_version_1_reads_with_the_rules_it_was_made_by():
    metadata = ModelMetadata.from_dict(_old("model.json"), "model.json")
    assert metadata.selection_score == _old("model.json")["selection_accuracy"] == 0.6
    assert metadata.config.training.selection_metric == "accuracy" and metadata.validation_threshold is None
    result = EvaluationResult.from_dict(_old("metrics.json"), "metrics.json")
    assert result.interval_methods == dict.fromkeys(("accuracy", "precision", "sensitivity", "specificity"), "wilson")
    assert result.undefined == {} and result.bootstrap is None and result.at_validation_threshold is None
    assert result.model.history == {} and result.model.selection_score == 0.6
    card = ChampionCard.from_dict(_old("card.json"), "card.json")
    assert card.interval_methods["accuracy"] == "wilson" and card.undefined == {}
    # ... and the speed switches and checkpoint policy added in 2, with the values models before it ran with.
    assert metadata.precision == "fp32"
    assert {k: metadata.config.to_dict()[k] for k in CONFIG_ADDED_IN_2} == CONFIG_ADDED_IN_2
    assert {k: result.model.config.to_dict()[k] for k in CONFIG_ADDED_IN_2} == CONFIG_ADDED_IN_2


def test_old_files_read_as_typed_fields():
    metadata = ModelMetadata.from_dict(_old("model.json"), "model.json")
    assert metadata.config.recipe == "paper" and metadata.config.training.freeze_backbone_after == 1
    assert metadata.dataset.version == "sha256:5bd68f5b6e21"
    assert metadata.artifact_metadata() == {
        "source": "imagenet",
        "weights_sha256": metadata.weights_sha256,
        "weights_stand_in": True,
        "backbone_tensors_loaded": 318,
        "best_epoch": 1,
        "selection_split": "test",
    }

    result = EvaluationResult.from_dict(_old("metrics.json"), "metrics.json")
    low, high = result.intervals_95["precision"]  # null in the file: no image was predicted COVID
    assert math.isnan(low) and math.isnan(high)
    # The summary in metrics.json of version 1 had no history; the rest is the model's.
    assert dataclasses.replace(result.model, history=metadata.history) == ModelSummary.of(metadata)

    card = ChampionCard.from_dict(_old("card.json"), "card.json")
    assert card.promotion.reason == "there was no champion; accuracy 0.6000"
    old_md = (OLD / "card.md").read_text()
    new_md = card_markdown(card)
    # The table gained a column saying how each interval was made; every line above it is as it was.
    assert new_md.split("| metric")[0] == old_md.split("| metric")[0]
    assert "| accuracy | 0.6000 | 0.231-0.882 | wilson |" in new_md
    assert card.image is None and "Trained in image" not in new_md
    in_image = card_markdown(dataclasses.replace(card, image="r.io/cxrtl-train:0.1.0-cd99c347dcfd"))
    assert "- Trained in image r.io/cxrtl-train:0.1.0-cd99c347dcfd\n" in in_image


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("history"), r"^model\.json: damaged model metadata \(no history\)$"),
        (lambda d: d.update(epochs=3), r"^model\.json: damaged model metadata \(unknown field\(s\) epochs\)$"),
        (lambda d: d.update(schema_version=4), r"^model\.json: model metadata of schema version 4; .* upgrade it$"),
        (lambda d: d["config"].pop("seed"), r"^model\.json: damaged model metadata \(KeyError: 'seed'\)$"),
        (lambda d: d["config"].update(epochs=0), r"^model\.json: damaged model metadata \(.*epochs must be a positive"),
    ],
    ids=["missing", "unknown", "newer", "config-missing", "config-out-of-range"],
)
def test_a_damaged_or_newer_record_is_one_error_naming_the_file(change, expected):
    data = _old("model.json")
    change(data)
    with pytest.raises(CxrtlError, match=expected) as caught:
        ModelMetadata.from_dict(data, "model.json")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("data", [[], "text", None])
def test_a_record_must_be_an_object(data):
    with pytest.raises(CxrtlError, match=r"^card\.json: not champion card"):
        ChampionCard.from_dict(data, "card.json")


# --- the prepared data's info.json and evaluate's checks.json --------------------------------------------------

DATA_RECORDS = {"info": PreparedInfo, "checks": DataChecks}


@pytest.mark.parametrize("name", sorted(DATA_RECORDS))
def test_an_unversioned_info_or_checks_file_reads_and_round_trips_with_every_value_kept(name):
    old = _old(f"{name}.json")
    record = DATA_RECORDS[name].from_dict(old, f"{name}.json")
    new = record.to_dict()
    assert new["schema_version"] == DATA_RECORDS[name].SCHEMA_VERSION
    assert {key: new[key] for key in old} == old
    # the fields added since are marked unknown (None) where the old file could not tell
    assert all(new[key] is None for key in set(new) - set(old) - {"schema_version", "masks"})
    assert DATA_RECORDS[name].from_dict(new, f"{name}.json") == record


def test_the_oldest_files_read_with_what_they_lacked_as_unknown():
    info = PreparedInfo.from_dict(_old("info-oldest.json"), "info.json")
    assert info.duplicates is None and info.collections is None
    assert info.masks == "not recorded (prepared by an older cxrtl)"
    assert info.dataset["version"] == "sha256:5bd68f5b6e21" and info.counts["test"] == {"Normal": 2, "COVID": 2}
    checks = DataChecks.from_dict(_old("checks-oldest.json"), "checks.json")
    assert checks.trained_on_test_images is None and not checks.masked.flagged


def test_data_records_read_as_typed_fields_and_undefined_rates_as_nan():
    info = PreparedInfo.from_dict(_old("info.json"), "info.json")
    assert info.duplicates == DuplicateSummary(20, 18, 1, 1, 4, 0)
    checks = DataChecks.from_dict(_old("checks.json"), "checks.json")
    assert checks.duplicates == info.duplicates and checks.trained_on_test_images == 0
    assert math.isnan(checks.masked.specificity) and math.isnan(checks.masked.balanced_accuracy)
    assert (
        checks.masked.sensitivity == 1.0 and checks.collections["https://demo.example/hospital-b/normal-ward"]["n"] == 2
    )


@pytest.mark.parametrize(
    ("name", "change", "expected"),
    [
        ("info", lambda d: d.pop("seed"), r"damaged prepared dataset's info \(no seed\)$"),
        ("info", lambda d: d.update(flavour=1), r"damaged prepared dataset's info \(unknown field\(s\) flavour\)$"),
        ("info", lambda d: d["duplicates"].pop("groups"), r"damaged prepared dataset's info \(TypeError: .*groups"),
        ("info", lambda d: d.update(schema_version=99), r"prepared dataset.s info of schema version 99; .*"),
        ("checks", lambda d: d.pop("masked"), r"damaged data checks \(no masked\)$"),
        ("checks", lambda d: d["masked"].pop("n"), r"damaged data checks \(TypeError: .*'n'"),
        ("checks", lambda d: d.update(masked="yes"), r"damaged data checks \(TypeError: "),
        ("checks", lambda d: d.update(schema_version="2"), r"data checks of schema version '2'; .* upgrade it$"),
    ],
    ids=["missing", "unknown", "nested-missing", "newer", "checks-missing", "masked-missing", "masked-text", "text"],
)
def test_a_damaged_or_newer_info_or_checks_file_is_one_error_naming_it(name, change, expected):
    data = _old(f"{name}.json")
    change(data)
    with pytest.raises(CxrtlError, match=rf"^{name}\.json: {expected}") as caught:
        DATA_RECORDS[name].from_dict(data, f"{name}.json")
    assert "\n" not in str(caught.value)


def test_a_prepared_folder_of_an_older_cxrtl_loads_and_a_damaged_info_is_one_error(tmp_path):
    """The folder is what the store may still hold from runs before info.json carried its version."""
    np.save(tmp_path / "images.npy", np.zeros((2, 32, 32), dtype=np.uint8))
    np.save(tmp_path / "labels.npy", np.array([0, 1]))
    np.save(tmp_path / "split.npy", np.array([0, 2], dtype=np.uint8))
    (tmp_path / "ids.json").write_text(json.dumps(["Normal/images/Normal-1.png", "COVID/images/COVID-1.png"]))
    (tmp_path / "info.json").write_text((OLD / "info-oldest.json").read_text())
    assert PreparedData.load(tmp_path).info == PreparedInfo.from_dict(_old("info-oldest.json"), "info.json")
    (tmp_path / "info.json").write_text(json.dumps({**_old("info.json"), "schema_version": 9}))
    with pytest.raises(CxrtlError, match=rf"^{tmp_path / 'info.json'}: prepared dataset's info of schema version 9"):
        PreparedData.load(tmp_path)


@pytest.mark.parametrize("name", ["model.json", "metrics.json"])
def test_a_schema_2_model_reads_with_its_device_unrecorded(name):
    current = RECORDS[name].from_dict(_old(name), name).to_dict()
    device = ("device_name", "cuda_runtime", "cuda_driver", "image")
    model = current if name == "model.json" else current["model"]
    assert [model[field] for field in device] == [None, None, None, None]
    model_2 = {k: v for k, v in model.items() if k not in device}
    schema_2 = model_2 if name == "model.json" else {**current, "model": model_2}
    assert RECORDS[name].from_dict({**schema_2, "schema_version": 2}, name).to_dict() == current
