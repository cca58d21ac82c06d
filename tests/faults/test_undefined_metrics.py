"""An undefined metric (one class only, nothing predicted COVID) is never a number that decides anything."""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import pytest

from cxrtl import champion
from cxrtl.compare import Predictions
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation, evaluation_result
from cxrtl.metrics import roc_points
from cxrtl.promote import promote
from cxrtl.recipes import TrainConfig
from cxrtl.records import DatasetRef, ModelSummary
from cxrtl.report import build_report
from cxrtl.store import LocalStore, keys
from cxrtl.weights import get_source

pytestmark = pytest.mark.faults


def _evaluation(source: str, y: np.ndarray, p: np.ndarray) -> Evaluation:
    model = ModelSummary(
        source=source,
        source_description=get_source(source).description,
        weights_sha256=hashlib.sha256(source.encode()).hexdigest(),
        weights_stand_in=True,
        run_id="r1",
        best_epoch=1,
        selection_split="val",
        selection_score=0.5,
        validation_threshold=None,
        history={},
        config=TrainConfig.from_recipe("recommended"),
        dataset=DatasetRef(None, None, None),
        device_name="cpu",
        cuda_runtime=None,
        cuda_driver=None,
        image=None,
    )
    predictions = Predictions([f"img{i}.png" for i in range(len(y))], y, p)
    return Evaluation(evaluation_result(predictions, model), roc_points(y, p), predictions)


NORMAL_ONLY = np.zeros(8, dtype=int)


def test_promotion_refuses_when_the_metric_is_undefined_for_every_model(tmp_path):
    store = LocalStore(tmp_path / "store")
    candidates = [_evaluation(s, NORMAL_ONLY, np.linspace(0.1, 0.9, 8)) for s in ("imagenet", "chexpert")]
    assert all(math.isnan(ev.metrics["roc_auc"]) for ev in candidates)
    with pytest.raises(CxrtlError, match=r"promotion metric roc_auc is undefined .*one class only") as caught:
        promote(store, tmp_path / "data", candidates, metric="roc_auc")
    assert "\n" not in str(caught.value)
    assert store.list("champion/") == []


def test_promotion_never_picks_an_undefined_score_over_a_defined_one(tmp_path):
    store = LocalStore(tmp_path / "store")
    y = np.array([1, 0] * 4)
    never_covid = _evaluation("chexpert", y, np.full(8, 0.1))  # precision undefined, not 0.0
    poor = _evaluation("imagenet", y, np.where(np.arange(8) < 3, 0.9, 0.1))
    assert math.isnan(never_covid.metrics["precision"]) and not math.isnan(poor.metrics["precision"])
    for source in ("imagenet", "chexpert"):  # what promotion copies to champion/ (not read)
        for name in ("model.pt", "model.json"):
            store.put_bytes(keys.model_key(source, "r1", name), source.encode())
    for order in ([never_covid, poor], [poor, never_covid]):
        for key in store.list("champion/"):
            store.delete(key)
        decision = promote(store, tmp_path / "data", order, metric="precision")
        assert decision.challenger.source == "imagenet"
        # 8 images cannot show either above chance: the first-champion floor keeps both out.
        assert not decision.promoted and "the first champion must" in decision.reason
        assert champion.current(store) is None


@pytest.mark.slow
def test_a_report_never_ranks_or_ties_an_undefined_value():
    y = np.array([1, 0] * 4)
    defined = _evaluation("imagenet", y, np.where(y == 1, 0.8, 0.3))
    undefined = _evaluation("chexpert", y, np.full(8, 0.1))
    report = build_report([undefined, defined], rank_metric="precision")
    assert [r.source for r in report.rows] == ["imagenet", "chexpert"]
    assert report.tied == ["imagenet"]
    assert "undefined (no image was predicted COVID)" in report.markdown()
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", report.markdown())  # base64 may spell nan
    assert "nan" not in text.lower()
