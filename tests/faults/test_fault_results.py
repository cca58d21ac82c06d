"""Issue 25, results that disagree: a predictions.csv whose probabilities were flipped (p -> 1 - p) is refused by
report (and by promote, which loads results the same way) in one line, not ranked against metrics.json's
opposite numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from refusal import refused

from cxrtl.compare import Predictions
from cxrtl.evaluate import METRICS_FILE, PREDICTIONS_FILE, evaluation_result, load_evaluation, write_predictions
from cxrtl.recipes import TrainConfig
from cxrtl.records import DatasetRef, ModelSummary

pytestmark = pytest.mark.faults


def _evaluated(folder: Path, p: np.ndarray) -> Path:
    """What ``cxrtl evaluate`` writes that report reads, for 20 test images scored ``p``."""
    y = np.array([1, 0] * 10)
    model = ModelSummary(
        source="imagenet",
        source_description="ImageNet",
        weights_sha256="ab" * 32,
        weights_stand_in=True,
        run_id="r1",
        best_epoch=1,
        selection_split="val",
        selection_score=0.9,
        validation_threshold=None,
        history={"train_loss": [0.5]},
        config=TrainConfig.from_recipe("recommended"),
        dataset=DatasetRef("tawsifurrahman/covid19-radiography-database", "v5", "cd" * 32),
        device_name="cpu",
        cuda_runtime=None,
        cuda_driver=None,
        image=None,
    )
    predictions = Predictions([f"img{i}.png" for i in range(20)], y, p)
    result = evaluation_result(predictions, model)
    folder.mkdir()
    (folder / METRICS_FILE).write_text(json.dumps(result.to_dict(), allow_nan=False) + "\n")
    write_predictions(folder / PREDICTIONS_FILE, predictions, result.threshold)
    return folder


def test_report_refuses_predictions_with_flipped_probabilities(tmp_path, capsys):
    y = np.array([1, 0] * 10)
    p = np.where(y == 1, np.linspace(0.55, 0.95, 20), np.linspace(0.05, 0.6, 20))
    folder = _evaluated(tmp_path / "eval", p)
    assert load_evaluation(folder).result.metrics["roc_auc"] > 0.9  # the honest files load

    metrics = json.loads((folder / METRICS_FILE).read_text())
    write_predictions(folder / PREDICTIONS_FILE, Predictions([f"img{i}.png" for i in range(20)], y, 1 - p), 0.5)
    out = tmp_path / "report"
    refused(
        capsys,
        ["report", "--results", str(folder), "--out", str(out)],
        naming=(str(folder), PREDICTIONS_FILE, METRICS_FILE, str(metrics["confusion"]), "evaluate again"),
        nothing_at=(out,),
    )
