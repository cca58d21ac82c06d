"""Paired comparisons on cases with a known answer; Holm; the tie rule; the same-images check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from cxrtl.compare import (
    Predictions,
    check_same_images,
    delong,
    holm,
    mcnemar_exact,
    pair_tests,
    ranking,
    tied_for_best,
)
from cxrtl.errors import CxrtlError

Y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def _predictions(p, y=Y, ids=None) -> Predictions:
    return Predictions(ids or [f"img{i}" for i in range(len(y))], np.asarray(y), np.asarray(p, dtype=np.float64))


def _delong_by_definition(y, p_a, p_b):
    """DeLong, Delong & Clarke-Pearson (1988) with loops: structural components from the pairwise kernel."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0

    v10 = [[np.mean([psi(p[i], p[j]) for j in neg]) for i in pos] for p in (p_a, p_b)]
    v01 = [[np.mean([psi(p[i], p[j]) for i in pos]) for j in neg] for p in (p_a, p_b)]
    aucs = [np.mean(v) for v in v10]
    s = np.cov(v10) / len(pos) + np.cov(v01) / len(neg)
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    return aucs[0] - aucs[1], 2 * norm.sf(abs(z))


def test_identical_predictions_are_not_different():
    p = np.array([0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.1, 0.55, 0.4, 0.3, 0.05])
    right = (p >= 0.5) == (Y == 1)
    assert mcnemar_exact(right, right) == 1.0
    assert delong(Y, p, p) == (0.0, 1.0)


def test_a_model_right_wherever_the_other_is_wrong_is_different():
    perfect = np.where(Y == 1, 0.9, 0.1)
    inverted = 1 - perfect
    right_a, right_b = (perfect >= 0.5) == (Y == 1), (inverted >= 0.5) == (Y == 1)
    assert right_a.all() and not right_b.any()
    assert mcnemar_exact(right_a, right_b) == pytest.approx(2 / 2 ** len(Y))
    difference, p = delong(Y, perfect, inverted)
    assert difference == 1.0 and p < 0.05


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_images():
    rng = np.random.default_rng(0)
    a, b = rng.random(200) < 0.8, rng.random(200) < 0.7
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    assert mcnemar_exact(a, b) == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue, rel=1e-12)
    assert mcnemar_exact(a, b) == mcnemar_exact(b, a)


def test_delong_matches_the_definition_with_ties():
    rng = np.random.default_rng(1)
    y = (rng.random(60) < 0.4).astype(int)
    p_a = np.round(np.clip(0.3 * y + rng.random(60) * 0.7, 0, 1), 1)  # rounded: many ties
    p_b = np.round(np.clip(0.15 * y + rng.random(60) * 0.85, 0, 1), 2)
    difference, p = delong(y, p_a, p_b)
    expected_difference, expected_p = _delong_by_definition(y, p_a, p_b)
    assert difference == pytest.approx(expected_difference) and p == pytest.approx(expected_p)


def test_holm_on_a_known_list():
    # Sorted 0.005, 0.01, 0.03, 0.04: times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04, then made monotone.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_ties_are_broken_by_roc_auc_then_brier_then_name_never_by_order():
    metrics = {
        "moco-v2": {"accuracy": 1.0, "roc_auc": 1.0, "brier": 0.02},
        "chexpert": {"accuracy": 1.0, "roc_auc": 1.0, "brier": 0.02},
        "imagenet": {"accuracy": 1.0, "roc_auc": 1.0, "brier": 0.01},
        "moco-v1": {"accuracy": 1.0, "roc_auc": 0.9, "brier": 0.001},
        "inat2021-supervised": {"accuracy": math.nan, "roc_auc": 1.0, "brier": 0.0},
        "chestx-ray14": {"accuracy": 0.9, "roc_auc": 1.0, "brier": 0.0},
    }
    expected = ["imagenet", "chexpert", "moco-v2", "moco-v1", "chestx-ray14", "inat2021-supervised"]
    assert ranking(metrics, "accuracy") == expected
    assert ranking(dict(reversed(metrics.items())), "accuracy") == expected
    assert ranking(metrics, "brier")[:2] == ["chestx-ray14", "inat2021-supervised"]  # lower is better


def test_tied_for_best_are_those_not_significantly_worse_than_the_first():
    rng = np.random.default_rng(2)
    y = np.array([1] * 50 + [0] * 50)
    good = np.where(y == 1, 0.8, 0.2) + rng.normal(0, 0.05, 100)
    almost = good.copy()
    almost[[0, 60]] = 1 - almost[[0, 60]]  # two images wrong
    poor = np.where(rng.random(100) < 0.35, 1 - good, good)  # about 35 wrong
    preds = {name: _predictions(np.clip(p, 0, 1), y) for name, p in (("a", good), ("b", almost), ("c", poor))}
    tests = pair_tests(preds, 0.5)
    assert [(t.a, t.b) for t in tests] == [("a", "b"), ("a", "c"), ("b", "c")]
    metrics = {
        name: {"accuracy": float(pr.correct(0.5).mean()), "roc_auc": 0.9, "brier": 0.1} for name, pr in preds.items()
    }
    order = ranking(metrics, "accuracy")
    assert order == ["a", "b", "c"]
    assert tied_for_best(order, metrics, tests, "accuracy") == {"a", "b"}
    by_pair = {(t.a, t.b): t for t in tests}
    assert by_pair[("a", "c")].mcnemar_holm < 0.05 <= by_pair[("a", "b")].mcnemar_holm
    assert [t.mcnemar_holm for t in tests] == pytest.approx(holm([t.mcnemar_p for t in tests]))


def test_predictions_on_different_test_images_are_refused():
    same = _predictions(np.full(len(Y), 0.5))
    check_same_images({"a": same, "b": _predictions(np.full(len(Y), 0.7))})
    other_ids = _predictions(np.full(len(Y), 0.5), ids=[f"x{i}" for i in range(len(Y))])
    other_labels = _predictions(np.full(len(Y), 0.5), y=1 - Y)
    for other in (other_ids, other_labels):
        with pytest.raises(CxrtlError, match=r"^b and a were evaluated on different test splits") as caught:
            pair_tests({"a": same, "b": other}, 0.5)
        assert "\n" not in str(caught.value)


def test_delong_has_no_p_with_one_image_of_a_class():
    y = np.array([1, 0, 0, 0])
    difference, p = delong(y, np.array([0.9, 0.1, 0.2, 0.3]), np.array([0.1, 0.9, 0.2, 0.3]))
    assert difference == 1.0 and math.isnan(p)
    assert all(math.isnan(v) for v in delong(np.zeros(4, dtype=int), np.ones(4) / 2, np.ones(4) / 2))
