"""Evaluate a trained model on the held-out test split."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrtl.compare import Predictions
from cxrtl.data import CLASS_NAMES, POSITIVE_LABEL, PreparedData, decided
from cxrtl.engine import PREDICT_BATCH_SIZE, Batches, predict, resolve_device
from cxrtl.errors import CxrtlError
from cxrtl.files import staged_folder
from cxrtl.gradcam import GRADCAM_FILE, explain
from cxrtl.metrics import binary_metrics, roc_points, selection_score
from cxrtl.records import AtThreshold, DataChecks, EvaluationResult, MaskedCheck, ModelSummary
from cxrtl.seen import SEEN_FILE, Seen, seen_in
from cxrtl.store import Store, keys
from cxrtl.train import load_model
from cxrtl.transforms import to_model_input

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
ROC_FILE = "roc.json"
CHECKS_FILE = "checks.json"  # what the data checks found: duplicates, the collections, the lungs masked out
# Balanced accuracy (the mean of sensitivity and specificity, 0.5 by chance whatever the class balance) at or
# above which a model still tells the classes apart with the lungs blacked out: half-way from chance to
# perfect. Models on this dataset have been reported to stay far above it (reading collection, text markers,
# patient position rather than the lungs).
MASKED_FLAG_BALANCED_ACCURACY = 0.75
PREDICTION_COLUMNS = ("id", "true_label", "predicted_label", "covid_probability")
# checks.json's counts of test images the model has seen (cxrtl.seen): trained on; trained on or chose its
# epoch on (the validation split); of those, how many only by thumbnail (a re-encoded or resized copy).
SEEN_CHECKS = ("trained_on_test_images", "seen_test_images", "seen_test_images_changed")


@dataclass
class Evaluation:
    result: EvaluationResult  # what metrics.json holds
    roc: dict[str, list[float]]  # fpr, tpr, thresholds: roc.json
    predictions: Predictions  # predictions.csv
    checks: DataChecks | None = None  # checks.json; None when the folder has none

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics


def evaluate(
    data_dir: Path,
    model_dir: Path,
    out_dir: Path,
    store: Store | None = None,
    device: str = "auto",
    batch_size: int = PREDICT_BATCH_SIZE,
    masked: bool = False,
    allow_seen: bool = False,
) -> Evaluation:
    """Write metrics.json, predictions.csv, roc.json, gradcam.npz (cxrtl.gradcam) and checks.json for the test
    split to ``out_dir`` (and the store); ``masked`` adds a second pass with the lungs blacked out (CxrtlError
    without usable masks).

    A model is not scored on test images it was trained on or chose its epoch on (by content hash or thumbnail,
    cxrtl.seen: a copy under another name, re-encoded or resized, or a split changed since, counts too) unless
    ``allow_seen``; then checks.json counts them and the report says so.
    """
    data = PreparedData.load(data_dir)
    test_idx = data.indices("test")
    if len(test_idx) == 0:
        raise CxrtlError(f"{data_dir}: the test split is empty")
    model, metadata = load_model(model_dir)
    if metadata.image_size != data.image_size:
        raise CxrtlError(
            f"{model_dir} was trained on {metadata.image_size} px images, {data_dir} holds {data.image_size} px"
        )
    seen_counts = _seen_test_images(data, test_idx, model_dir, metadata.config.training.selection_split, allow_seen)
    lungs = _test_masks(data, data_dir) if masked else None
    torch_device = resolve_device(device)
    model = model.to(torch_device)
    test = Batches.of(data, "test", batch_size, metadata.config.training.normalize, torch_device)
    probs = predict(model, test)
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
    masked = None
    if lungs is not None:
        outside = np.where(lungs, 0, data.images[test_idx]).astype(np.uint8)
        batches = dataclasses.replace(test, images=outside, classes=y_true, indices=np.arange(len(test_idx)))
        masked = _masked_summary(binary_metrics(y_true, predict(model, batches)[:, POSITIVE_LABEL]))
    checks = DataChecks(
        duplicates=data.info.duplicates,
        collections=_by_collection(data, test_idx, y_true, p_covid),
        masked=masked,
        **seen_counts,
        split_counts=data.info.counts,
    )

    with staged_folder(out_dir, marker=METRICS_FILE) as staged:
        metrics_json = json.dumps(result.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        (staged / METRICS_FILE).write_text(metrics_json + "\n")
        (staged / ROC_FILE).write_text(json.dumps(roc) + "\n")
        write_predictions(staged / PREDICTIONS_FILE, predictions, result.threshold)
        cams.save(staged / GRADCAM_FILE)
        (staged / CHECKS_FILE).write_text(json.dumps(checks.to_dict(), indent=2, sort_keys=True) + "\n")
    if store is not None and metadata.run_id:
        for name in (METRICS_FILE, PREDICTIONS_FILE, ROC_FILE, GRADCAM_FILE, CHECKS_FILE):
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
    return Evaluation(result, roc, predictions, checks)


def score_images(
    model_dir: Path, data: PreparedData, indices: np.ndarray, device: str = "auto", batch_size: int = PREDICT_BATCH_SIZE
) -> np.ndarray:
    """The model's COVID probability for the images ``indices`` of ``data``."""
    model, metadata = load_model(model_dir)
    if metadata.image_size != data.image_size:
        raise CxrtlError(
            f"{model_dir} was trained on {metadata.image_size} px images, the data holds {data.image_size} px"
        )
    torch_device = resolve_device(device)
    batches = Batches(data.images, data.labels, indices, batch_size, metadata.config.training.normalize, torch_device)
    return predict(model.to(torch_device), batches)[:, POSITIVE_LABEL]


def _seen_test_images(
    data: PreparedData, test_idx: np.ndarray, model_dir: Path, selection_split: str, allow_seen: bool
) -> dict[str, int | None]:
    """How many of the test images the model trained on, and chose its epoch on where that was not the test
    split (the paper recipe's), by content hash or thumbnail (cxrtl.seen); None where that cannot be told.
    Refused unless ``allow_seen``."""
    seen = Seen.read(Path(model_dir) / SEEN_FILE)
    if seen is None or data.hashes is None:
        logger.warning("%s: cannot tell whether the model trained on these test images (no content hashes)", model_dir)
        return dict.fromkeys(SEEN_CHECKS)
    trained = seen_in(data, test_idx, seen.trained)
    chosen = np.zeros_like(trained) if selection_split == "test" else seen_in(data, test_idx, seen.selected) & ~trained
    seen_any = trained | chosen
    exact = seen.any.hashes
    changed = int(sum(data.hashes[i] not in exact for i in test_idx[seen_any]))
    counts = {
        "trained_on_test_images": int(trained.sum()),
        "seen_test_images": int(seen_any.sum()),
        "seen_test_images_changed": changed,
    }
    if seen_any.any():
        what = (
            f"{model_dir} was trained on {int(trained.sum())} of the {len(test_idx)} test images"
            + (f" and chose its epoch on {int(chosen.sum())} more" if chosen.any() else "")
            + (f" ({changed} of them re-encoded, resized or otherwise changed copies)" if changed else "")
        )
        if not allow_seen:
            raise CxrtlError(
                f"{what}: its metrics would look better than they are; evaluate it on data it has not seen, or "
                "allow it with --allow-training-images"
            )
        logger.warning("%s; scored on them (allowed)", what)
    return counts


def _test_masks(data: PreparedData, data_dir: Path) -> np.ndarray:
    lungs = data.lung_masks(data.indices("test"))
    if lungs is None:
        raise CxrtlError(f"{data_dir}: no usable lung masks for the masked evaluation ({data.info.masks})")
    return lungs


def _masked_summary(scored: dict[str, Any]) -> MaskedCheck:
    m = scored["metrics"]
    balanced = m["balanced_accuracy"]
    return MaskedCheck(
        n=scored["n"],
        accuracy=m["accuracy"],
        sensitivity=m["sensitivity"],
        specificity=m["specificity"],
        balanced_accuracy=balanced,
        flag_at=MASKED_FLAG_BALANCED_ACCURACY,
        flagged=bool(balanced >= MASKED_FLAG_BALANCED_ACCURACY),
    )


def _by_collection(
    data: PreparedData, test_idx: np.ndarray, y_true: np.ndarray, p_covid: np.ndarray
) -> dict[str, dict[str, Any]] | None:
    """Per collection of the test images: how many of each class, and the accuracy on them."""
    if data.collections is None:
        return None
    correct = (p_covid >= 0.5).astype(int) == y_true
    table: dict[str, dict[str, Any]] = {}
    for k, i in enumerate(test_idx):
        row = table.setdefault(data.collections[i], {**dict.fromkeys(CLASS_NAMES, 0), "n": 0, "correct": 0})
        row[CLASS_NAMES[y_true[k]]] += 1
        row["n"] += 1
        row["correct"] += int(correct[k])
    for row in table.values():
        row["accuracy"] = row["correct"] / row["n"]
    return table


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
    checks_path = folder / CHECKS_FILE
    try:
        roc = json.loads(roc_path.read_text()) if roc_path.is_file() else {"fpr": [], "tpr": [], "thresholds": []}
        text = json.loads((folder / METRICS_FILE).read_text())
        checks_json = json.loads(checks_path.read_text()) if checks_path.is_file() else None
    except ValueError as exc:
        raise CxrtlError(f"{folder}: damaged evaluation results ({type(exc).__name__}); evaluate again") from None
    result = EvaluationResult.from_dict(text, str(folder / METRICS_FILE))
    checks = None if checks_json is None else DataChecks.from_dict(checks_json, str(checks_path))
    predictions = read_predictions(folder / PREDICTIONS_FILE)
    if len(predictions.ids) != result.n:
        raise CxrtlError(
            f"{folder}: {PREDICTIONS_FILE} holds {len(predictions.ids)} images, {METRICS_FILE} counts {result.n}; "
            "evaluate again"
        )
    _check_same_evaluation(folder, predictions, result)
    return Evaluation(result, roc, predictions, checks)


# ROC AUC recomputed from predictions.csv's exact floats differs from metrics.json's by summation order at most.
_AUC_TOLERANCE = 1e-9


def _check_same_evaluation(folder: Path, predictions: Predictions, result: EvaluationResult) -> None:
    """Refuse a predictions.csv that does not give metrics.json's confusion matrix and ROC AUC: a file edited or
    taken from another evaluation (flipped probabilities kept the count and passed) is no silent result."""
    y, y_pred = predictions.y_true, (predictions.p_covid >= result.threshold).astype(int)
    confusion = {
        "tn": int(np.sum((y == 0) & (y_pred == 0))),
        "fp": int(np.sum((y == 0) & (y_pred == 1))),
        "fn": int(np.sum((y == 1) & (y_pred == 0))),
        "tp": int(np.sum((y == 1) & (y_pred == 1))),
    }
    auc, stored_auc = selection_score("roc_auc", y, predictions.p_covid), result.metrics["roc_auc"]
    same_auc = (math.isnan(auc) and math.isnan(stored_auc)) or abs(auc - stored_auc) <= _AUC_TOLERANCE
    if confusion != result.confusion or not same_auc:
        raise CxrtlError(
            f"{folder}: {PREDICTIONS_FILE} gives confusion {confusion} and ROC AUC {auc:.4f}, {METRICS_FILE} says "
            f"{result.confusion} and {stored_auc:.4f}: not one evaluation's files; evaluate again"
        )


def write_predictions(path: Path, predictions: Predictions, threshold: float) -> None:
    """One row per test image; the probability as ``repr`` of its float, which reads back to the same float."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        for image_id, label, p in zip(predictions.ids, predictions.y_true, predictions.p_covid, strict=True):
            writer.writerow([image_id, CLASS_NAMES[label], decided(p, threshold), repr(float(p))])


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
