"""Evaluate a trained model on the held-out test split."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrtl.data import CLASS_NAMES, POSITIVE_LABEL, PreparedData
from cxrtl.engine import Batches, predict, resolve_device
from cxrtl.errors import CxrtlError
from cxrtl.files import staged_folder
from cxrtl.gradcam import GRADCAM_FILE, explain
from cxrtl.metrics import binary_metrics, json_safe, roc_points
from cxrtl.records import EvaluationResult, ModelSummary
from cxrtl.store import Store, keys
from cxrtl.train import load_model
from cxrtl.transforms import to_model_input

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
ROC_FILE = "roc.json"
# The model's per-epoch history, for the report's figure (the report reads evaluate's folders, not the models).
HISTORY_FILE = "history.json"


@dataclass
class Evaluation:
    result: EvaluationResult  # what metrics.json holds
    roc: dict[str, list[float]]  # fpr, tpr, thresholds: roc.json

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics


def evaluate(
    data_dir: Path,
    model_dir: Path,
    out_dir: Path,
    store: Store | None = None,
    device: str = "auto",
    batch_size: int = 64,
) -> Evaluation:
    """Write metrics.json, predictions.csv, roc.json, gradcam.npz (cxrtl.gradcam) and history.json for the
    test split to ``out_dir`` (and the store)."""
    data = PreparedData.load(data_dir)
    test_idx = data.indices("test")
    if len(test_idx) == 0:
        raise CxrtlError(f"{data_dir}: the test split is empty")
    model, metadata = load_model(model_dir)
    if metadata.image_size != data.image_size:
        raise CxrtlError(
            f"{model_dir} was trained on {metadata.image_size} px images, {data_dir} holds {data.image_size} px"
        )
    torch_device = resolve_device(device)
    test = Batches.of(data, "test", batch_size, metadata.config.training.normalize, torch_device)
    probs = predict(model.to(torch_device), test)
    p_covid = probs[:, POSITIVE_LABEL]
    y_true = data.labels[test_idx]
    result = EvaluationResult(**binary_metrics(y_true, p_covid), model=ModelSummary.of(metadata))
    roc = roc_points(y_true, p_covid)
    normalize = metadata.config.training.normalize
    cams = explain(
        model,
        lambda pixels: to_model_input(pixels.to(torch_device), normalize),
        data.images,
        test_idx,
        [data.ids[i] for i in test_idx],
        y_true,
        p_covid,
        result.threshold,
    )

    with staged_folder(out_dir, marker=METRICS_FILE) as staged:
        metrics_json = json.dumps(result.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        (staged / METRICS_FILE).write_text(metrics_json + "\n")
        (staged / ROC_FILE).write_text(json.dumps(roc) + "\n")
        _write_predictions(staged / PREDICTIONS_FILE, [data.ids[i] for i in test_idx], y_true, p_covid)
        cams.save(staged / GRADCAM_FILE)
        history = {k: getattr(metadata, k) for k in ("source", "selection_split", "best_epoch", "history")}
        (staged / HISTORY_FILE).write_text(json.dumps(json_safe(history), allow_nan=False) + "\n")
    if store is not None and metadata.run_id:
        for name in (METRICS_FILE, PREDICTIONS_FILE, ROC_FILE, GRADCAM_FILE, HISTORY_FILE):
            store.put_file(keys.model_key(metadata.source, metadata.run_id, name), out_dir / name)
    m = result.metrics
    logger.info(
        "%s on %d test images: accuracy %.4f, sensitivity %.4f, specificity %.4f, ROC AUC %.4f",
        metadata.source,
        result.n,
        m["accuracy"],
        m["sensitivity"],
        m["specificity"],
        m["roc_auc"],
    )
    return Evaluation(result, roc)


def load_evaluation(folder: Path) -> Evaluation:
    folder = Path(folder)
    if not (folder / METRICS_FILE).is_file():
        raise CxrtlError(f"{folder}: no {METRICS_FILE}; is this the output of 'cxrtl evaluate'?")
    roc_path = folder / ROC_FILE
    try:
        roc = json.loads(roc_path.read_text()) if roc_path.is_file() else {"fpr": [], "tpr": [], "thresholds": []}
        text = json.loads((folder / METRICS_FILE).read_text())
    except ValueError as exc:
        raise CxrtlError(f"{folder}: damaged evaluation results ({type(exc).__name__}); evaluate again") from None
    return Evaluation(EvaluationResult.from_dict(text, str(folder / METRICS_FILE)), roc)


def _write_predictions(path: Path, ids: list[str], y_true: np.ndarray, p_covid: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "true_label", "predicted_label", "covid_probability"])
        for image_id, label, p in zip(ids, y_true, p_covid, strict=True):
            writer.writerow([image_id, CLASS_NAMES[label], CLASS_NAMES[int(p >= 0.5)], f"{p:.6f}"])
