"""The JSON records: files written before records were versioned still read, and write back as they were;
a damaged record or one of a newer schema is one error naming the file.

tests/records/ holds a model.json, metrics.json, card.json and card.md as the code before versioned
records wrote them (a 2-epoch paper-recipe run on the demo data; its precision interval is undefined).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from cxrtl.errors import CxrtlError
from cxrtl.promote import card_markdown
from cxrtl.records import ChampionCard, EvaluationResult, ModelMetadata, ModelSummary

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


def _as_schema_2(name: str, old: dict) -> dict:
    if name == "model.json":
        return {**old, "schema_version": 2, "precision": "fp32", "config": {**old["config"], **CONFIG_ADDED_IN_2}}
    if name == "metrics.json":
        model = {**old["model"], "config": {**old["model"]["config"], **CONFIG_ADDED_IN_2}}
        return {**old, "schema_version": 2, "model": model}
    return {"schema_version": 1, **old}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_file_from_before_versions_reads_and_writes_back_the_same_fields(name):
    """... and those that came later, with the values that files of before them ran with."""
    old = _old(name)
    assert "schema_version" not in old
    record = RECORDS[name].from_dict(old, name)
    assert record.to_dict() == _as_schema_2(name, old)
    assert RECORDS[name].from_dict(record.to_dict(), name).to_dict() == record.to_dict()


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
    assert result.model == ModelSummary.of(metadata)

    card = ChampionCard.from_dict(_old("card.json"), "card.json")
    assert card.promotion.reason == "there was no champion; accuracy 0.6000"
    assert card_markdown(card) == (OLD / "card.md").read_text()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("history"), r"^model\.json: damaged model metadata \(no history\)$"),
        (lambda d: d.update(epochs=3), r"^model\.json: damaged model metadata \(unknown field\(s\) epochs\)$"),
        (lambda d: d.update(schema_version=3), r"^model\.json: model metadata of schema version 3; .* upgrade it$"),
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
