"""Every metric and interval against an independent computation on fixed predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from cxrtl.metrics import (
    BOOTSTRAP_MIN_PER_CLASS,
    BOOTSTRAP_RESAMPLES,
    ECE_BINS,
    METRIC_LABELS,
    METRIC_NAMES,
    NO_PREDICTED_COVID,
    NOT_ESTIMABLE,
    ONE_CLASS,
    _hanley_mcneil_variance,
    binary_metrics,
    clopper_pearson,
    json_safe,
    newcombe_auc_interval,
    stratified_resamples,
    weighted_probability_metrics,
    youden_threshold,
)

# Four COVID, six Normal. At 0.5: tp 3 (0.9, 0.8, 0.5: the threshold counts as COVID), fn 1 (0.3), fp 1 (0.6), tn 5.
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.5, 0.3, 0.6, 0.2, 0.1, 0.4, 0.45, 0.35])


def _brute_auc(y: np.ndarray, p: np.ndarray) -> float:
    pairs = [(a, b) for a in p[y == 1] for b in p[y == 0]]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)


def _hand_ece(y: np.ndarray, p: np.ndarray) -> float:
    total = 0.0
    for k in range(ECE_BINS):
        low, high = k / ECE_BINS, (k + 1) / ECE_BINS
        members = [(yi, pi) for yi, pi in zip(y, p, strict=True) if low <= pi < high or (k == ECE_BINS - 1 and pi == 1)]
        if members:
            total += len(members) / len(y) * abs(np.mean([m[0] for m in members]) - np.mean([m[1] for m in members]))
    return total


def test_point_values_match_the_hand_built_confusion_matrix():
    r = binary_metrics(Y, P)
    assert r["confusion"] == {"tn": 5, "fp": 1, "fn": 1, "tp": 3} and r["n"] == 10 and r["undefined"] == {}
    m = r["metrics"]
    assert list(m) == list(METRIC_NAMES) == list(METRIC_LABELS)  # every metric has its readers' name
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(5 / 6)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)
    assert m["roc_auc"] == pytest.approx(_brute_auc(Y, P)) == pytest.approx(19 / 24)
    # Ranked by probability the COVID images come 1st, 2nd, 4th and 8th: precision 1, 1, 3/4, 4/8 at each.
    assert m["pr_auc"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 8) / 4)
    assert m["brier"] == pytest.approx(np.mean((P - Y) ** 2))
    assert m["ece"] == pytest.approx(_hand_ece(Y, P))
    # Specificity >= 0.95 needs no false positive: above 0.6, two of four COVID images.
    assert m["sensitivity_at_95_specificity"] == pytest.approx(2 / 4)
    # Sensitivity >= 0.95 needs all four COVID images: down to 0.3, which takes 4 of 6 Normal ones.
    assert m["specificity_at_95_sensitivity"] == pytest.approx(2 / 6)


def test_exact_intervals_match_scipy_and_every_interval_holds_its_value():
    r = binary_metrics(Y, P)
    counts = {"accuracy": (8, 10), "sensitivity": (3, 4), "specificity": (5, 6)}
    for name, (k, n) in counts.items():
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert r["intervals_95"][name] == pytest.approx([ci.low, ci.high], abs=1e-9), name
        assert r["interval_methods"][name] == "clopper-pearson"
    assert clopper_pearson(10, 10)[1] == 1.0 and all(math.isnan(v) for v in clopper_pearson(0, 0))
    for name in METRIC_NAMES:
        low, high = r["intervals_95"][name]
        assert math.isnan(low) or low <= r["metrics"][name] <= high, name


def test_balanced_accuracy_precision_and_f1_bound_at_the_bounds_of_sensitivity_and_specificity():
    """At 97.5 % each, so that both hold together 95 % of the time; at the split's class mix (4 of 10 COVID)."""
    r = binary_metrics(Y, P)
    s = binomtest(3, 4).proportion_ci(confidence_level=0.975, method="exact")
    c = binomtest(5, 6).proportion_ci(confidence_level=0.975, method="exact")
    assert r["intervals_95"]["balanced_accuracy"] == pytest.approx([(s.low + c.low) / 2, (s.high + c.high) / 2])
    assert r["intervals_95"]["precision"] == pytest.approx(
        [0.4 * b[0] / (0.4 * b[0] + 0.6 * (1 - b[1])) for b in ((s.low, c.low), (s.high, c.high))]
    )
    f1 = [2 * 0.4 * b[0] / (0.4 * b[0] + 0.4 + 0.6 * (1 - b[1])) for b in ((s.low, c.low), (s.high, c.high))]
    assert r["intervals_95"]["f1"] == pytest.approx(f1)
    assert {r["interval_methods"][m] for m in ("balanced_accuracy", "precision", "f1")} == {"clopper-pearson sens/spec"}


def test_roc_auc_interval_is_the_set_of_aucs_within_1_96_standard_errors_and_never_a_point():
    auc = np.array([19 / 24, 1.0, 0.5])
    low, high = newcombe_auc_interval(auc, 4, 6)
    assert (low < auc).all() and (auc <= high).all()
    for bound in (low, high):  # each bound is where the score statistic equals 1.96
        inner = bound[bound < 1]
        z = np.abs(auc[bound < 1] - inner) / np.sqrt(_hanley_mcneil_variance(inner, 4, 6))
        assert z == pytest.approx(1.959964, abs=1e-6)
    assert high[1] == 1.0 and low[1] < 0.9  # perfect separation of 10 images is no proof of an AUC of 1
    assert newcombe_auc_interval(np.array([1.0]), 13, 10)[0][0] < newcombe_auc_interval(np.array([1.0]), 130, 100)[0][0]
    r = binary_metrics(Y, P)
    assert r["intervals_95"]["roc_auc"] == pytest.approx([low[0], high[0]])
    assert r["interval_methods"]["roc_auc"] == "newcombe score"


def test_small_splits_have_no_bootstrap_interval_and_ece_never_has_one():
    r = binary_metrics(Y, P)
    for name in ("pr_auc", "brier", "ece", "sensitivity_at_95_specificity", "specificity_at_95_sensitivity"):
        assert r["interval_methods"][name] == NOT_ESTIMABLE, name
        assert all(math.isnan(v) for v in r["intervals_95"][name]), name


def test_resamples_are_seeded_and_keep_each_class_count():
    w = stratified_resamples(Y, 300, seed=7)
    assert w.shape == (300, 10)
    assert (w[:, Y == 1].sum(axis=1) == 4).all() and (w[:, Y == 0].sum(axis=1) == 6).all()
    assert np.array_equal(w, stratified_resamples(Y, 300, seed=7))
    assert not np.array_equal(w, stratified_resamples(Y, 300, seed=8))


@pytest.mark.slow
def test_vectorised_resampled_metrics_equal_sklearn_on_each_resample():
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
    )

    w = stratified_resamples(Y, 100, seed=3)
    prob = weighted_probability_metrics(w, Y, P)
    for b in range(len(w)):
        idx = np.repeat(np.arange(10), w[b])
        y, p = Y[idx], P[idx]
        expected = {
            "roc_auc": roc_auc_score(y, p),
            "pr_auc": average_precision_score(y, p),
            "brier": brier_score_loss(y, p),
            "ece": _hand_ece(y, p),
            "sensitivity_at_95_specificity": binary_metrics(y, p)["metrics"]["sensitivity_at_95_specificity"],
            "specificity_at_95_sensitivity": binary_metrics(y, p)["metrics"]["specificity_at_95_sensitivity"],
        }
        got = {name: values[b] for name, values in prob.items()}
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, nan_ok=True, abs=1e-12), (b, name)


def test_bootstrap_interval_is_the_percentile_interval_of_the_seeded_resamples():
    """With enough images of each class; the Brier score's resamples recomputed one by one."""
    y = np.r_[np.ones(BOOTSTRAP_MIN_PER_CLASS, int), np.zeros(BOOTSTRAP_MIN_PER_CLASS, int)]
    p = np.random.default_rng(5).uniform(size=len(y)) * 0.5 + 0.5 * y
    r = binary_metrics(y, p)
    w = stratified_resamples(y)
    assert len(w) == BOOTSTRAP_RESAMPLES == r["bootstrap"]["resamples"]
    briers = [np.mean((p[idx] - y[idx]) ** 2) for idx in (np.repeat(np.arange(len(y)), row) for row in w)]
    assert r["intervals_95"]["brier"] == pytest.approx(list(np.percentile(briers, [2.5, 97.5])))
    assert r["interval_methods"]["brier"] == "bootstrap"
    assert binary_metrics(y[1:], p[1:])["interval_methods"]["brier"] == NOT_ESTIMABLE  # one COVID image short


def test_no_predicted_covid_leaves_precision_undefined_with_its_reason_not_zero():
    r = binary_metrics(Y, np.full(10, 0.2))
    assert math.isnan(r["metrics"]["precision"]) and r["undefined"]["precision"] == NO_PREDICTED_COVID
    assert all(math.isnan(v) for v in r["intervals_95"]["precision"])
    assert r["metrics"]["f1"] == 0.0 and "f1" not in r["undefined"]  # 2tp / (2tp + fp + fn) = 0 / 4
    text = json.dumps(json_safe(r), allow_nan=False)
    assert json.loads(text)["metrics"]["precision"] is None


def test_one_class_leaves_the_ranking_metrics_undefined():
    r = binary_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.7, 0.2, 0.3]))
    for name in ("sensitivity", "balanced_accuracy", "roc_auc", "pr_auc", "sensitivity_at_95_specificity"):
        assert math.isnan(r["metrics"][name]), name
        assert all(math.isnan(v) for v in r["intervals_95"][name]), name
    assert r["undefined"]["roc_auc"] == ONE_CLASS
    assert r["metrics"]["specificity"] == 0.75 and r["metrics"]["brier"] == pytest.approx(
        np.mean([0.01, 0.49, 0.04, 0.09])
    )


def test_the_validation_threshold_is_applied_unchanged_beside_05():
    r = binary_metrics(Y, P, validation_threshold=0.35)
    at = r["at_validation_threshold"]
    # At 0.35: COVID 0.9, 0.8, 0.5 and Normal 0.6, 0.4, 0.45, 0.35 are called COVID.
    assert at["threshold"] == 0.35 and at["confusion"] == {"tn": 2, "fp": 4, "fn": 1, "tp": 3}
    assert at["metrics"]["precision"] == pytest.approx(3 / 7)
    assert r["confusion"] == {"tn": 5, "fp": 1, "fn": 1, "tp": 3}
    assert binary_metrics(Y, P)["at_validation_threshold"] is None


def test_youden_threshold_maximises_j_and_falls_back_to_05():
    # Thresholds 0.9, 0.8 give J 0.25, 0.5; 0.6 gives 0.5 - 1/6; 0.5 gives 0.75 - 1/6 = 0.583 (the best).
    assert youden_threshold(Y, P) == 0.5
    assert youden_threshold(np.array([1, 0, 1, 0]), np.array([0.8, 0.7, 0.2, 0.1])) == 0.8  # J 0.5 at 0.8 and at 0.2
    assert youden_threshold(np.array([1, 1]), np.array([0.3, 0.9])) == 0.5
    assert youden_threshold(np.array([1, 0]), np.array([0.1, 0.9])) == 0.5  # inverted: no threshold beats chance
