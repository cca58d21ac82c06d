"""Binary classification metrics with COVID as the positive class, and their 95 % intervals.

Point values come from scikit-learn wherever it has the metric; expected calibration error (ECE) and the two
operating points are written here. Each interval's method was chosen for its coverage, checked by simulation at
23 (13 COVID), 100 and 1,453 test images for true values 0.75 to 0.999 (``cxrtl coverage``, :mod:`cxrtl.coverage`):

- ``clopper-pearson``: the exact binomial interval, for accuracy, sensitivity and specificity. Wilson's score
  interval, used before, covers as little as 88 % with 13 COVID images at a sensitivity of 0.99.
- ``clopper-pearson sens/spec``: balanced accuracy, precision and F1 at the test split's class mix are each a
  function of sensitivity and specificity that grows with both; their bounds are that function at the bounds
  of two Clopper-Pearson intervals at 97.5 % (so both hold together at least 95 % of the time).
- ``newcombe score``: ROC AUC's score-type interval (Newcombe 2006, method 5): every AUC whose Hanley-McNeil
  variance puts the observed one within 1.96 standard errors. Unlike a percentile bootstrap or DeLong's
  variance, it does not shrink to a point when the classes separate perfectly.
- ``bootstrap``: the percentile interval over :data:`BOOTSTRAP_RESAMPLES` resamples of the test images, drawn
  with :data:`BOOTSTRAP_SEED` and stratified by class (each resample keeps the split's COVID and Normal counts),
  for PR AUC, Brier score and the two operating points, and only with at least :data:`BOOTSTRAP_MIN_PER_CLASS`
  images of each class: below that it collapses (every resample of 13 right out of 13 is right), and the
  interval is ``not estimable`` (NaN).
- ECE has no interval (``not estimable``): it is biased upwards at every size, so a resampled interval around
  it misses the true calibration error of a well-calibrated model nearly always.

A metric that cannot be computed (no image predicted COVID, one class only) is NaN in ``metrics``, null in
the JSON, with its reason in ``undefined``; never 0.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import beta
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
# Each metric's name for readers: table headers, figure titles.
METRIC_LABELS = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "f1": "F1",
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "brier": "Brier score",
    "ece": "ECE",
    "sensitivity_at_95_specificity": "Sensitivity at 95% specificity",
    "specificity_at_95_sensitivity": "Specificity at 95% sensitivity",
}
LOWER_IS_BETTER = frozenset({"brier", "ece"})
HIGHER_IS_BETTER = tuple(name for name in METRIC_NAMES if name not in LOWER_IS_BETTER)
# Each metric's interval method (the module's docstring says why each).
CLOPPER_PEARSON = "clopper-pearson"
SENS_SPEC = "clopper-pearson sens/spec"
NEWCOMBE = "newcombe score"
BOOTSTRAP = "bootstrap"
NOT_ESTIMABLE = "not estimable"
INTERVAL_METHODS = {
    "accuracy": CLOPPER_PEARSON,
    "sensitivity": CLOPPER_PEARSON,
    "specificity": CLOPPER_PEARSON,
    "precision": SENS_SPEC,
    "f1": SENS_SPEC,
    "balanced_accuracy": SENS_SPEC,
    "roc_auc": NEWCOMBE,
    "pr_auc": BOOTSTRAP,
    "brier": BOOTSTRAP,
    "sensitivity_at_95_specificity": BOOTSTRAP,
    "specificity_at_95_sensitivity": BOOTSTRAP,
    "ece": NOT_ESTIMABLE,
}

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2_000
BOOTSTRAP_SEED = 0
BOOTSTRAP_MIN_PER_CLASS = 200  # fewer images of either class: no bootstrap interval (see the module docstring)
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


def clopper_pearson(successes, n, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """The exact (Clopper-Pearson) interval of a binomial proportion, elementwise; NaN where ``n`` is 0."""
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    tail = (1 - confidence) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, beta.ppf(tail, k, n - k + 1), 0.0)
        high = np.where(k < n, beta.ppf(1 - tail, k + 1, n - k), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def sens_spec_functions(prevalence) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Balanced accuracy, precision and F1 as functions of (sensitivity, specificity) at a class mix; each
    grows with both arguments, so bounds at the arguments' bounds are bounds of the function."""
    q = np.asarray(prevalence, dtype=np.float64)

    def precision(s, c):
        return _divide(q * s, q * s + (1 - q) * (1 - c))

    def f1(s, c):
        return _divide(2 * q * s, q * s + q + (1 - q) * (1 - c))

    return {"balanced_accuracy": lambda s, c: (s + c) / 2, "precision": precision, "f1": f1}


def sens_spec_intervals(tp, positives, tn, negatives, confidence: float = CONFIDENCE) -> dict[str, tuple]:
    """Intervals of balanced accuracy, precision and F1 at the test split's class mix, from Clopper-Pearson
    intervals of sensitivity and specificity at a confidence that makes both hold together (Bonferroni)."""
    each = 1 - (1 - confidence) / 2
    s_low, s_high = clopper_pearson(tp, positives, each)
    c_low, c_high = clopper_pearson(tn, negatives, each)
    positives, negatives = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    functions = sens_spec_functions(_divide(positives, positives + negatives))
    return {name: (f(s_low, c_low), f(s_high, c_high)) for name, f in functions.items()}


def _hanley_mcneil_variance(theta: np.ndarray, positives, negatives) -> np.ndarray:
    """The variance of the Mann-Whitney AUC at true value ``theta`` (Hanley & McNeil's formula with both class
    sizes replaced by their mean, Newcombe's method 5)."""
    half = (np.asarray(positives) + np.asarray(negatives)) / 2
    return theta * (1 - theta) / (positives * negatives) * (2 * half - 1 - 3 * (half - 1) / ((2 - theta) * (1 + theta)))


def newcombe_auc_interval(auc, positives, negatives, z: float = _Z) -> tuple[np.ndarray, np.ndarray]:
    """Every AUC whose :func:`_hanley_mcneil_variance` puts ``auc`` within ``z`` standard errors of it,
    elementwise (each bound found by bisection); NaN where the AUC is undefined."""
    auc = np.asarray(auc, dtype=np.float64)
    positives, negatives = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)

    def outside(theta):  # the score statistic exceeds z: theta is not in the interval
        return (auc - theta) ** 2 > z * z * _hanley_mcneil_variance(theta, positives, negatives)

    bounds = []
    for far in (0.0, 1.0):
        # ``inside`` stays in the interval (the estimate), ``out`` outside it (or the end of [0, 1]).
        inside, out = np.nan_to_num(auc, nan=0.5), np.full(auc.shape, far)
        for _ in range(60):
            mid = (inside + out) / 2
            mid_out = outside(mid)
            out, inside = np.where(mid_out, mid, out), np.where(mid_out, inside, mid)
        # The end itself belongs to the interval where the estimate sits on it (variance 0 there).
        bounds.append(np.where(outside(np.full(auc.shape, far)), inside, far))
    nan = np.isnan(auc)
    return np.where(nan, np.nan, bounds[0]), np.where(nan, np.nan, bounds[1])


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
    confusion: dict[str, int],
    points: dict[str, float],
    resampled: dict[str, np.ndarray],
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Each of ``names``' interval by its :data:`INTERVAL_METHODS` entry (NaN where undefined or not
    estimable), and the method that made it."""
    c = confusion
    positives, negatives = c["tp"] + c["fn"], c["tn"] + c["fp"]
    exact = {
        "accuracy": (c["tp"] + c["tn"], positives + negatives),
        "sensitivity": (c["tp"], positives),
        "specificity": (c["tn"], negatives),
    }
    derived = sens_spec_intervals(c["tp"], positives, c["tn"], negatives)
    tail = 100 * (1 - CONFIDENCE) / 2
    intervals, methods = {}, {}
    for name in names:
        method = INTERVAL_METHODS[name]
        if method == BOOTSTRAP and min(positives, negatives) < BOOTSTRAP_MIN_PER_CLASS:
            method = NOT_ESTIMABLE
        methods[name] = method
        if name in undefined or method == NOT_ESTIMABLE:
            bounds = (math.nan, math.nan)
        elif method == CLOPPER_PEARSON:
            bounds = clopper_pearson(*exact[name])
        elif method == SENS_SPEC:
            bounds = derived[name]
        elif method == NEWCOMBE:
            bounds = newcombe_auc_interval(points[name], positives, negatives)
        elif np.isnan(resampled[name]).all():
            bounds = (math.nan, math.nan)
        else:
            bounds = np.nanpercentile(resampled[name], [tail, 100 - tail])
        intervals[name] = [float(v) for v in bounds]
    return intervals, methods


def at_threshold(y_true: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """The threshold metrics of ``p >= threshold``: values, intervals, their methods, reasons, confusion."""
    y, pred = np.asarray(y_true).astype(int), (np.asarray(p) >= threshold).astype(int)
    confusion = _confusion(y, pred)
    undefined = _undefined(confusion, THRESHOLD_METRICS)
    points = _threshold_points(y, pred)
    metrics = {name: math.nan if name in undefined else float(points[name]()) for name in THRESHOLD_METRICS}
    intervals, methods = _intervals(THRESHOLD_METRICS, undefined, confusion, metrics, {})
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
    return {
        "resamples": BOOTSTRAP_RESAMPLES,
        "seed": BOOTSTRAP_SEED,
        "min_per_class": BOOTSTRAP_MIN_PER_CLASS,
        "confidence": CONFIDENCE,
        "ece_bins": ECE_BINS,
    }


def binary_metrics(
    y_true: np.ndarray, p_positive: np.ndarray, threshold: float = 0.5, validation_threshold: float | None = None
) -> dict[str, Any]:
    """Every metric of COVID probabilities ``p_positive`` against ``y_true`` (1 = COVID), with its interval.

    Threshold metrics are at ``threshold``; with ``validation_threshold`` (chosen on the validation split),
    they are also given at that threshold, applied unchanged.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_positive, dtype=np.float64)
    main = at_threshold(y, p, threshold)
    undefined = main["undefined"] | _undefined(main["confusion"], PROBABILITY_METRICS + OPERATING_POINTS)
    points = _probability_points(y, p)
    names = PROBABILITY_METRICS + OPERATING_POINTS
    probability = {name: math.nan if name in undefined else float(points[name]) for name in names}
    intervals, methods = _intervals(
        names, undefined, main["confusion"], probability, weighted_probability_metrics(stratified_resamples(y), y, p)
    )
    return {
        "n": len(y),
        "threshold": threshold,
        "metrics": main["metrics"] | probability,
        "intervals_95": main["intervals_95"] | intervals,
        "interval_methods": main["interval_methods"] | methods,
        "undefined": undefined,
        "confusion": main["confusion"],
        "bootstrap": bootstrap_settings(),
        "at_validation_threshold": (None if validation_threshold is None else at_threshold(y, p, validation_threshold)),
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
