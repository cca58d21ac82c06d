"""Binary classification metrics with COVID as the positive class, and their 95 % intervals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

METRIC_NAMES = ("accuracy", "precision", "sensitivity", "specificity", "f1", "roc_auc")


def rank_key(metrics: dict[str, float], metric: str) -> tuple[float, float]:
    """Sort key for "better": ``metric``, then ROC AUC to break ties; an undefined (NaN) value ranks last."""

    def defined(value: float) -> float:
        return -math.inf if math.isnan(value) else value

    return (defined(metrics[metric]), defined(metrics["roc_auc"]))


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN (an undefined metric) as None: JSON has no NaN, and strict parsers refuse it."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound at the 0.99 accuracies the study reports)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def binary_metrics(y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of the predictions ``p_positive >= threshold`` against ``y_true`` (1 = COVID)."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(p_positive) >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel())
    n = tn + fp + fn + tp
    precision, sensitivity = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    both_classes = len(np.unique(y_true)) == 2
    metrics = {
        "accuracy": _ratio(tp + tn, n),
        "precision": precision,
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * precision * sensitivity, precision + sensitivity) if precision + sensitivity else 0.0,
        "roc_auc": float(roc_auc_score(y_true, p_positive)) if both_classes else math.nan,
    }
    intervals = {
        "accuracy": wilson_interval(tp + tn, n),
        "precision": wilson_interval(tp, tp + fp),
        "sensitivity": wilson_interval(tp, tp + fn),
        "specificity": wilson_interval(tn, tn + fp),
    }
    return {
        "n": n,
        "threshold": threshold,
        "metrics": metrics,
        "intervals_95": {k: list(v) for k, v in intervals.items()},
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def roc_points(y_true: np.ndarray, p_positive: np.ndarray) -> dict[str, list[float]]:
    """The ROC curve; its first threshold (sklearn's +inf) is written as 1.0 so JSON and KFP accept it."""
    if len(np.unique(y_true)) < 2:
        return {"fpr": [], "tpr": [], "thresholds": []}
    fpr, tpr, thresholds = roc_curve(y_true, p_positive)
    return {
        "fpr": fpr.tolist(),
        "tpr": tpr.tolist(),
        "thresholds": np.clip(thresholds, 0.0, 1.0).tolist(),
    }
