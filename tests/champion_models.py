"""Models to promote without training any: a model's files in the store (their bytes stand for the weights)
and its evaluation, read from the recorded metrics.json with the source and run id changed. Promotion with no
champion copies the files and never loads them, so the storage side can be tested on them quickly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from cxrtl.champion import MODEL_FILES
from cxrtl.evaluate import Evaluation
from cxrtl.metrics import METRIC_NAMES
from cxrtl.records import ChampionCard, EvaluationResult, Promotion
from cxrtl.store import Store, keys

RECORDED_METRICS = Path(__file__).parent / "records" / "metrics.json"
SOURCE = "imagenet"


def stored_model(store: Store, run_id: str, source: str = SOURCE) -> Evaluation:
    """``run_id``'s model of ``source``: its files put into ``store``, and its evaluation."""
    for name in MODEL_FILES:
        store.put_bytes(keys.model_key(source, run_id, name), f"{name} of {source} in {run_id}".encode())
    result = EvaluationResult.from_dict(json.loads(RECORDED_METRICS.read_text()), str(RECORDED_METRICS))
    model = dataclasses.replace(result.model, source=source, run_id=run_id)
    # A clearly good model on 200 test images, so that it clears any floor a first champion must clear.
    good = dataclasses.replace(
        result,
        model=model,
        n=200,
        metrics=dict.fromkeys(METRIC_NAMES, 0.95),
        intervals_95={name: [0.91, 0.97] for name in METRIC_NAMES},
        interval_methods=dict.fromkeys(METRIC_NAMES, "wilson"),
        undefined={},
        confusion={"tn": 95, "fp": 5, "fn": 5, "tp": 95},
    )
    return Evaluation(good, roc={}, predictions=None)


def card_of(evaluation: Evaluation) -> ChampionCard:
    return ChampionCard.of(evaluation.result, Promotion("accuracy", 0.005, "a test"), "2026-01-01T00:00:00Z")


def model_files(run_id: str, source: str = SOURCE) -> dict[str, str]:
    return {name: keys.model_key(source, run_id, name) for name in MODEL_FILES}
