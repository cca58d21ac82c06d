"""Binary classification metrics with COVID as the positive class, and their 95 % intervals.

Point values come from scikit-learn wherever it has the metric; expected calibration error (ECE) and the two
operating points are written here. Intervals:

- ``wilson``: the Wilson score interval, for the four plain proportions (accuracy, precision, sensitivity,
  specificity). It keeps its coverage near 0 and 1, where the study's sources sit (0.99) and where a percentile
  bootstrap collapses to a point (every resample of 20 right out of 20 is right).
- ``bootstrap``: the percentile interval over :data:`BOOTSTRAP_RESAMPLES` resamples of the test images, drawn
  with :data:`BOOTSTRAP_SEED` and stratified by class (each resample keeps the split's COVID and Normal counts),
  for everything else. All resamples are computed at once as a matrix of per-image weights.

A metric that cannot be computed (no image predicted COVID, one class only) is NaN in ``metrics``, null in
the JSON, with its reason in ``undefined``; never 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

# Metrics that depend on the decision threshold, then those computed from the probabilities.
THRESHOLD_METRICS = ("accuracy", "precision", "sensitivity", "specificity", "f1", "balanced_accuracy")
PROBABILITY_METRICS = ("roc_auc", "pr_auc", "brier", "ece")
# Sensitivity where specificity is at least OPERATING_TARGET, and the converse: the best the ROC curve offers.
OPERATING_POINTS = ("sensitivity_at_95_specificity", "specificity_at_95_sensitivity")
METRIC_NAMES = THRESHOLD_METRICS + PROBABILITY_METRICS + OPERATING_POINTS
LOWER_IS_BETTER = frozenset({"brier", "ece"})
HIGHER_IS_BETTER = tuple(name for name in METRIC_NAMES if name not in LOWER_IS_BETTER)
WILSON_METRICS = frozenset({"accuracy", "precision", "sensitivity", "specificity"})

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2_000
BOOTSTRAP_SEED = 0
ECE_BINS = 10  # equal-width bins of the COVID probability on [0, 1]; 1.0 falls in the last
OPERATING_TARGET = 0.95
_Z = 1.959963984540054  # the standard normal quantile of 1 - (1 - CONFIDENCE) / 2

ONE_CLASS = "the test split holds one class only"
NO_COVID = "the test split holds no COVID image"
NO_NORMAL = "the test split holds no Normal image"
NO_PREDICTED_COVID = "no image was predicted COVID"


def rank_key(metrics: dict[str, float], metric: str) -> float:
    """Larger is better on ``metric`` (Brier and ECE negated); an undefined (NaN) value ranks last."""
    value = metrics[metric]
    if math.isnan(value):
        return -math.inf
    return -value if metric in LOWER_IS_BETTER else value


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN (an undefined metric) as None: JSON has no NaN, and strict parsers refuse it."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def wilson_interval(successes: int, n: int, z: float = _Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound at the 0.99 accuracies the study reports)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 or n successes the bound is exactly 0 or 1; rounding would leave it a hair inside.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return (low, 1.0 if successes == n else min(1.0, centre + half))


def stratified_resamples(y_true: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED):
    """How often each image is drawn in each resample: an int array [resamples, images], drawn within each class."""
    y_true = np.asarray(y_true)
    n = len(y_true)
    rng = np.random.default_rng(seed)
    flat = []
    for label in (0, 1):
        members = np.flatnonzero(y_true == label)
        if len(members):
            draws = members[rng.integers(0, len(members), size=(resamples, len(members)))]
            flat.append((np.arange(resamples)[:, None] * n + draws).ravel())
    counts = np.bincount(np.concatenate(flat), minlength=resamples * n) if flat else np.zeros(resamples * n, int)
    return counts.reshape(resamples, n)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_threshold_metrics(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, np.ndarray]:
    """Each of :data:`THRESHOLD_METRICS` for each row of image ``weights`` (NaN where undefined)."""
    y, pred = np.asarray(y_true) == 1, np.asarray(y_pred) == 1
    w = np.asarray(weights, dtype=np.float64)
    tp, fp = w @ (y & pred), w @ (~y & pred)
    fn, tn = w @ (y & ~pred), w @ (~y & ~pred)
    sensitivity, specificity = _divide(tp, tp + fn), _divide(tn, tn + fp)
    return {
        "accuracy": _divide(tp + tn, tp + tn + fp + fn),
        "precision": _divide(tp, tp + fp),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "f1": _divide(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": (sensitivity + specificity) / 2,
    }


def weighted_probability_metrics(weights: np.ndarray, y_true: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Each of :data:`PROBABILITY_METRICS` and :data:`OPERATING_POINTS` for each row of image ``weights``.

    The images are grouped by distinct probability, highest first (tied images share a threshold, as in
    scikit-learn's curves); cumulative weighted counts give the ROC and precision-recall curves of every row.
    """
    y, p = np.asarray(y_true).astype(np.float64), np.asarray(p, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    w_sorted = w[:, order]
    pos = np.add.reduceat(w_sorted * y[order], starts, axis=1)
    neg = np.add.reduceat(w_sorted * (1 - y[order]), starts, axis=1)
    tps, fps = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    n_pos, n_neg = tps[:, -1], fps[:, -1]
    total = w.sum(axis=1)
    # A COVID image beats every Normal one below its score, and half of those tied with it.
    auc = _divide((pos * (n_neg[:, None] - fps + 0.5 * neg)).sum(axis=1), n_pos * n_neg)
    precision = _divide(tps, tps + fps)
    ap = _divide((pos * np.nan_to_num(precision)).sum(axis=1), n_pos)
    sensitivity = _divide(tps, n_pos[:, None])
    specificity = 1 - _divide(fps, n_neg[:, None])
    # Predicting nothing COVID (sensitivity 0, specificity 1) is a point of the curve too.
    sens_at_spec = np.where(specificity >= OPERATING_TARGET, sensitivity, 0.0).max(axis=1)
    spec_at_sens = np.where(sensitivity >= OPERATING_TARGET, specificity, -np.inf).max(axis=1)
    both = (n_pos > 0) & (n_neg > 0)
    bins = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
    gaps = np.zeros((len(p), ECE_BINS))
    gaps[np.arange(len(p)), bins] = y - p
    return {
        "roc_auc": auc,
        "pr_auc": np.where(both, ap, np.nan),
        "brier": _divide(w @ (p - y) ** 2, total),
        "ece": _divide(np.abs(w @ gaps).sum(axis=1), total),
        "sensitivity_at_95_specificity": np.where(both, sens_at_spec, np.nan),
        "specificity_at_95_sensitivity": np.where(both, spec_at_sens, np.nan),
    }


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray) -> float:
    """ECE over :data:`ECE_BINS` equal-width bins: the image-weighted mean |observed COVID rate - mean probability|."""
    return float(weighted_probability_metrics(np.ones((1, len(p))), y_true, p)["ece"][0])


def operating_points(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The best sensitivity with specificity >= 0.95 and the best specificity with sensitivity >= 0.95."""
    fpr, tpr, _ = roc_curve(y_true, p, drop_intermediate=False)
    specificity = 1 - fpr
    return {
        "sensitivity_at_95_specificity": float(tpr[specificity >= OPERATING_TARGET].max()),
        "specificity_at_95_sensitivity": float(specificity[tpr >= OPERATING_TARGET].max()),
    }


def _confusion(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, int]:
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel())
    return {"tn": tn, "fp": fp, "fn": fn, "tp": tp}


def _undefined(confusion: dict[str, int], names: tuple[str, ...]) -> dict[str, str]:
    """Why each of ``names`` that cannot be computed on these predictions cannot."""
    c = confusion
    has_covid, has_normal = c["tp"] + c["fn"] > 0, c["tn"] + c["fp"] > 0
    reasons = {
        "precision": None if c["tp"] + c["fp"] else NO_PREDICTED_COVID,
        "sensitivity": None if has_covid else NO_COVID,
        "specificity": None if has_normal else NO_NORMAL,
        "f1": None if has_covid or c["fp"] else NO_COVID,
    }
    one_class = None if has_covid and has_normal else ONE_CLASS
    for name in ("balanced_accuracy", "roc_auc", "pr_auc", *OPERATING_POINTS):
        reasons[name] = one_class
    return {name: reasons[name] for name in names if reasons.get(name)}


def _threshold_points(y: np.ndarray, pred: np.ndarray) -> dict[str, Callable[[], float]]:
    """Each threshold metric's scikit-learn computation, to run where it is defined."""
    return {
        "accuracy": lambda: accuracy_score(y, pred),
        "precision": lambda: precision_score(y, pred),
        "sensitivity": lambda: recall_score(y, pred),
        "specificity": lambda: recall_score(y, pred, pos_label=0),
        "f1": lambda: f1_score(y, pred),
        "balanced_accuracy": lambda: balanced_accuracy_score(y, pred),
    }


def _probability_points(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    points = {"brier": brier_score_loss(y, p, labels=[0, 1]), "ece": expected_calibration_error(y, p)}
    if len(np.unique(y)) == 2:
        points |= {"roc_auc": roc_auc_score(y, p), "pr_auc": average_precision_score(y, p)}
        points |= operating_points(y, p)
    return points


def _intervals(
    names: tuple[str, ...],
    undefined: dict[str, str],
    resampled: dict[str, np.ndarray],
    confusion: dict[str, int],
) -> tuple[dict[str, list[float]], dict[str, str]]:
    c = confusion
    counts = {
        "accuracy": (c["tp"] + c["tn"], sum(c.values())),
        "precision": (c["tp"], c["tp"] + c["fp"]),
        "sensitivity": (c["tp"], c["tp"] + c["fn"]),
        "specificity": (c["tn"], c["tn"] + c["fp"]),
    }
    tail = 100 * (1 - CONFIDENCE) / 2
    intervals, methods = {}, {}
    for name in names:
        methods[name] = "wilson" if name in WILSON_METRICS else "bootstrap"
        values = resampled[name]
        if name in undefined or (methods[name] == "bootstrap" and np.isnan(values).all()):
            intervals[name] = [math.nan, math.nan]
        elif methods[name] == "wilson":
            intervals[name] = list(wilson_interval(*counts[name]))
        else:
            intervals[name] = [float(v) for v in np.nanpercentile(values, [tail, 100 - tail])]
    return intervals, methods


def at_threshold(y_true: np.ndarray, p: np.ndarray, threshold: float, weights: np.ndarray) -> dict[str, Any]:
    """The threshold metrics of ``p >= threshold``: values, intervals, their methods, reasons, confusion."""
    y, pred = np.asarray(y_true).astype(int), (np.asarray(p) >= threshold).astype(int)
    confusion = _confusion(y, pred)
    undefined = _undefined(confusion, THRESHOLD_METRICS)
    points = _threshold_points(y, pred)
    metrics = {name: math.nan if name in undefined else float(points[name]()) for name in THRESHOLD_METRICS}
    resampled = weighted_threshold_metrics(weights, y, pred)
    intervals, methods = _intervals(THRESHOLD_METRICS, undefined, resampled, confusion)
    return {
        "threshold": threshold,
        "metrics": metrics,
        "intervals_95": intervals,
        "interval_methods": methods,
        "undefined": undefined,
        "confusion": confusion,
    }


def bootstrap_settings() -> dict[str, Any]:
    """How the intervals were made, for the record."""
    return {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "confidence": CONFIDENCE, "ece_bins": ECE_BINS}


def binary_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5, validation_threshold: float | None = None
) -> dict[str, Any]:
    """Every metric of COVID probabilities ``p_positive`` against ``y_true`` (1 = COVID), with its interval.

    Threshold metrics are at ``threshold``; with ``validation_threshold`` (chosen on the validation split),
    they are also given at that threshold, applied unchanged.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_positive, dtype=np.float64)
    weights = stratified_resamples(y)
    main = at_threshold(y, p, threshold, weights)
    undefined = main["undefined"] | _undefined(main["confusion"], PROBABILITY_METRICS + OPERATING_POINTS)
    points = _probability_points(y, p)
    names = PROBABILITY_METRICS + OPERATING_POINTS
    probability = {name: math.nan if name in undefined else float(points[name]) for name in names}
    intervals, methods = _intervals(names, undefined, weighted_probability_metrics(weights, y, p), main["confusion"])
    return {
        "n": len(y),
        "threshold": threshold,
        "metrics": main["metrics"] | probability,
        "intervals_95": main["intervals_95"] | intervals,
        "interval_methods": main["interval_methods"] | methods,
        "undefined": undefined,
        "confusion": main["confusion"],
        "bootstrap": bootstrap_settings(),
        "at_validation_threshold": (
            None if validation_threshold is None else at_threshold(y, p, validation_threshold, weights)
        ),
    }


def youden_threshold(y_true: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold that maximises Youden's J (sensitivity + specificity - 1), the highest of
    equal ones; 0.5 when the split holds one class or no threshold beats chance (J <= 0)."""
    if len(np.unique(y_true)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y_true, p, drop_intermediate=False)
    j = tpr - fpr
    best = int(np.argmax(j))  # thresholds fall, so the first maximum is the highest threshold
    return float(thresholds[best]) if j[best] > 0 else 0.5


def selection_score(metric: str, y_true: np.ndarray, p: np.ndarray) -> float:
    """The measure a recipe picks its best epoch by, on the selection split (NaN where undefined)."""
    if metric == "roc_auc":
        return float(roc_auc_score(y_true, p)) if len(np.unique(y_true)) == 2 else math.nan
    return float(accuracy_score(y_true, np.asarray(p) >= 0.5))


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
