"""The KFP UI's view of an evaluation: every scalar of metrics.json by name, the confusion matrix, the ROC."""

from __future__ import annotations

import json

from cxrtl.data import CLASS_NAMES
from cxrtl.metrics import binary_metrics, roc_points
from cxrtl.ui_outputs import metric_scalars, ui_outputs

Y_TRUE = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
P_COVID = [0.9, 0.8, 0.5, 0.3, 0.6, 0.2, 0.1, 0.4, 0.45, 0.35]


def test_every_finite_number_is_a_scalar_by_its_path_and_the_rest_is_left_out():
    document = {
        "schema_version": 2,
        "n": 10,
        "metrics": {"accuracy": 0.8, "roc_auc": None, "new_metric": 0.5},
        "intervals_95": {"accuracy": [0.49, 0.94], "roc_auc": [None, None]},
        "undefined": {"roc_auc": "one class only"},
        "paired": {"flag": True, "deep": {"p": 1}},
        "nan": float("nan"),
        "model": {"best_epoch": 3, "source": "imagenet"},
    }
    assert metric_scalars(document) == {
        "n": 10.0,
        "metrics.accuracy": 0.8,
        "metrics.new_metric": 0.5,
        "intervals_95.accuracy[0]": 0.49,
        "intervals_95.accuracy[1]": 0.94,
        "paired.deep.p": 1.0,
    }


def test_an_evaluation_folder_gives_its_metrics_confusion_matrix_and_roc(tmp_path):
    result = binary_metrics(Y_TRUE, P_COVID)
    roc = roc_points(Y_TRUE, P_COVID)
    (tmp_path / "metrics.json").write_text(json.dumps({"schema_version": 1, **result, "model": {"source": "x"}}))
    (tmp_path / "roc.json").write_text(json.dumps(roc))
    ui = ui_outputs(tmp_path)
    assert ui.classes == list(CLASS_NAMES) == ["Normal", "COVID"]
    assert ui.confusion == [[5, 1], [1, 3]]  # rows true Normal, COVID; columns predicted
    assert ui.roc == roc
    assert ui.scalars["metrics.accuracy"] == 0.8 and ui.scalars["confusion.tp"] == 3.0
    assert {f"metrics.{name}" for name in result["metrics"]} <= set(ui.scalars)
    assert not any(name.startswith("model") for name in ui.scalars)
