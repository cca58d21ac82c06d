"""Evaluate a trained model on the held-out test split."""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrtl.compare import Predictions
from cxrtl.data import CLASS_NAMES, POSITIVE_LABEL, PreparedData
from cxrtl.engine import Batches, predict, resolve_device
from cxrtl.errors import CxrtlError
from cxrtl.files import staged_folder
from cxrtl.gradcam import GRADCAM_FILE, explain
from cxrtl.metrics import binary_metrics, roc_points
from cxrtl.records import AtThreshold, EvaluationResult, ModelSummary
from cxrtl.store import Store, keys
from cxrtl.train import load_model
from cxrtl.transforms import to_model_input

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
ROC_FILE = "roc.json"
PREDICTION_COLUMNS = ("id", "true_label", "predicted_label", "covid_probability")


@dataclass
class Evaluation:
    result: EvaluationResult  # what metrics.json holds
    roc: dict[str, list[float]]  # fpr, tpr, thresholds: roc.json
    predictions: Predictions  # predictions.csv

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
    """Write metrics.json, predictions.csv, roc.json and gradcam.npz (cxrtl.gradcam) for the test split to
    ``out_dir`` (and the store)."""
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
    # Float64 from here on: what predictions.csv holds exactly, so the metrics recomputed from it are these.
    p_covid = probs[:, POSITIVE_LABEL].astype(np.float64)
    y_true = data.labels[test_idx]
    predictions = Predictions([data.ids[i] for i in test_idx], y_true, p_covid)
    result = evaluation_result(predictions, ModelSummary.of(metadata))
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
        write_predictions(staged / PREDICTIONS_FILE, predictions, result.threshold)
        cams.save(staged / GRADCAM_FILE)
    if store is not None and metadata.run_id:
        for name in (METRICS_FILE, PREDICTIONS_FILE, ROC_FILE, GRADCAM_FILE):
            store.put_file(keys.model_key(metadata.source, metadata.run_id, name), out_dir / name)
    m = result.metrics
    logger.info(
        "%s on %d test images: accuracy %.4f, sensitivity %.4f, specificity %.4f, ROC AUC %.4f "
        "(NaN: undefined, see metrics.json)",
        metadata.source,
        result.n,
        m["accuracy"],
        m["sensitivity"],
        m["specificity"],
        m["roc_auc"],
    )
    return Evaluation(result, roc, predictions)


def evaluation_result(predictions: Predictions, model: ModelSummary) -> EvaluationResult:
    """The results of ``model``'s ``predictions``: at 0.5, and at its validation threshold where it has one."""
    metrics = binary_metrics(predictions.y_true, predictions.p_covid, validation_threshold=model.validation_threshold)
    at_validation = metrics.pop("at_validation_threshold")
    return EvaluationResult(
        **metrics,
        at_validation_threshold=None if at_validation is None else AtThreshold(**at_validation),
        model=model,
    )


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
    result = EvaluationResult.from_dict(text, str(folder / METRICS_FILE))
    predictions = read_predictions(folder / PREDICTIONS_FILE)
    if len(predictions.ids) != result.n:
        raise CxrtlError(
            f"{folder}: {PREDICTIONS_FILE} holds {len(predictions.ids)} images, {METRICS_FILE} counts {result.n}; "
            "evaluate again"
        )
    return Evaluation(result, roc, predictions)


def write_predictions(path: Path, predictions: Predictions, threshold: float) -> None:
    """One row per test image; the probability as ``repr`` of its float, which reads back to the same float."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        for image_id, label, p in zip(predictions.ids, predictions.y_true, predictions.p_covid, strict=True):
            writer.writerow([image_id, CLASS_NAMES[label], CLASS_NAMES[int(p >= threshold)], repr(float(p))])


def read_predictions(path: Path) -> Predictions:
    """``predictions.csv`` back, refusing in one line a missing column, an unknown label, a probability that is
    not a number in [0, 1], or an image given twice."""
    if not path.is_file():
        raise CxrtlError(f"{path}: no such file; is its folder the output of 'cxrtl evaluate'?")
    labels = {name: label for label, name in enumerate(CLASS_NAMES)}
    ids, y_true, p_covid, seen = [], [], [], set()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PREDICTION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CxrtlError(f"{path}: no column {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            image_id, label, text = row["id"], row["true_label"], row["covid_probability"]
            if image_id in seen:
                raise CxrtlError(f"{path}: line {line}: id {image_id!r} given twice")
            if label not in labels:
                raise CxrtlError(f"{path}: line {line}: true_label {label!r} is not one of {', '.join(CLASS_NAMES)}")
            try:
                p = float(text)
            except (TypeError, ValueError):
                p = math.nan
            if not 0.0 <= p <= 1.0:  # NaN fails this too
                raise CxrtlError(f"{path}: line {line}: covid_probability {text!r} is not a number in [0, 1]")
            seen.add(image_id)
            ids.append(image_id)
            y_true.append(labels[label])
            p_covid.append(p)
    return Predictions(ids, np.array(y_true, dtype=int), np.array(p_covid, dtype=np.float64))
