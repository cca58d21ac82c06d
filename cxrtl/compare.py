"""Paired comparisons of weight sources on the same test images, and which of them are tied for best.

For each pair of sources: McNemar's exact test on which images each gets right (a two-sided binomial test
on the discordant images) and DeLong's test of the difference of their ROC AUCs (the two AUCs' covariance from
the same images). Each test's p-values are Holm-adjusted over all pairs of the run (a family per test).

Order (:func:`ranking`): the ranking metric, then ROC AUC, then Brier score (lower first), then the source's
name; an undefined value ranks last. "Tied for best": the first source, and every other one whose ranking-metric
test against it has a Holm-adjusted p >= :data:`ALPHA` (DeLong for ROC AUC, McNemar for every other metric).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrtl.errors import CxrtlError
from cxrtl.metrics import rank_key

ALPHA = 0.05


@dataclass(frozen=True)
class Predictions:
    """One model's COVID probabilities on the test images (``predictions.csv``)."""

    ids: list[str]
    y_true: np.ndarray  # 1 = COVID
    p_covid: np.ndarray  # float64

    def correct(self, threshold: float) -> np.ndarray:
        return (self.p_covid >= threshold).astype(int) == self.y_true


@dataclass(frozen=True)
class PairTest:
    a: str
    b: str
    mcnemar_p: float
    mcnemar_holm: float
    auc_difference: float  # a's ROC AUC minus b's
    delong_p: float
    delong_holm: float

    def holm_p(self, metric: str) -> float:
        """The adjusted p of the test that speaks for ``metric``."""
        return self.delong_holm if metric == "roc_auc" else self.mcnemar_holm


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Two-sided exact McNemar p: how unlikely the split of the images only one model gets right is, if
    each of them were equally likely to be either model's."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(correct_b & ~correct_a))
    n = only_a + only_b
    tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integers; Python divides them to the nearest float


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2)[inverse]


def delong(y_true: np.ndarray, p_a: np.ndarray, p_b: np.ndarray) -> tuple[float, float]:
    """DeLong's test of two correlated ROC AUCs (Sun & Xu's midrank form): (AUC a - AUC b, two-sided p)."""
    positive, negative = y_true == 1, y_true == 0
    m, n = int(positive.sum()), int(negative.sum())
    if m == 0 or n == 0:
        return (math.nan, math.nan)
    v10, v01, aucs = [], [], []
    for p in (p_a, p_b):
        pos, neg = p[positive], p[negative]
        all_ranks = _midranks(np.concatenate([pos, neg]))
        pos_ranks, neg_ranks = all_ranks[:m], all_ranks[m:]
        aucs.append((pos_ranks.sum() - m * (m + 1) / 2) / (m * n))
        v10.append((pos_ranks - _midranks(pos)) / n)
        v01.append(1 - (neg_ranks - _midranks(neg)) / m)
    difference = float(aucs[0] - aucs[1])
    if min(m, n) < 2:  # no spread of structural components to estimate from one image of a class
        return (difference, math.nan)
    cov = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if variance <= 1e-15:  # identical rankings, or perfectly separated ones: no spread to test against
        return (difference, 1.0 if abs(difference) < 1e-12 else 0.0)
    return (difference, math.erfc(abs(difference) / math.sqrt(2 * variance)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def check_same_images(predictions: dict[str, Predictions]) -> None:
    """Refuse predictions of sources that were not made on the same test images (ids and labels, in order)."""
    items = sorted(predictions.items())
    first, reference = items[0]
    for source, other in items[1:]:
        if other.ids != reference.ids or not np.array_equal(other.y_true, reference.y_true):
            raise CxrtlError(
                f"{source} and {first} were evaluated on different test splits (image ids or labels differ); "
                "paired comparisons need the same test images: evaluate every source on one prepared dataset"
            )


def pair_tests(predictions: dict[str, Predictions], threshold: float) -> list[PairTest]:
    """Both tests for every pair of sources (in name order), Holm-adjusted over all pairs."""
    check_same_images(predictions)
    pairs = list(itertools.combinations(sorted(predictions), 2))
    mcnemar, auc = [], []
    for a, b in pairs:
        pa, pb = predictions[a], predictions[b]
        mcnemar.append(mcnemar_exact(pa.correct(threshold), pb.correct(threshold)))
        auc.append(delong(pa.y_true, pa.p_covid, pb.p_covid))
    delong_ps = [p for _, p in auc]
    mcnemar_holm = holm(mcnemar)
    defined = [i for i, p in enumerate(delong_ps) if not math.isnan(p)]
    delong_holm = [math.nan] * len(pairs)
    for i, adjusted in zip(defined, holm([delong_ps[i] for i in defined]), strict=True):
        delong_holm[i] = adjusted
    return [
        PairTest(a, b, mcnemar[i], mcnemar_holm[i], auc[i][0], delong_ps[i], delong_holm[i])
        for i, (a, b) in enumerate(pairs)
    ]


def ranking(metrics: dict[str, dict[str, float]], metric: str) -> list[str]:
    """The sources best first: ``metric``, then ROC AUC, then Brier score, then name (never input order)."""

    def key(source: str) -> tuple:
        m = metrics[source]
        return (-rank_key(m, metric), -rank_key(m, "roc_auc"), -rank_key(m, "brier"), source)

    return sorted(metrics, key=key)


def tied_for_best(order: list[str], metrics: dict[str, dict[str, float]], tests: list[PairTest], metric: str):
    """The sources not significantly worse than the first of ``order`` on ``metric``."""
    top = order[0]
    if math.isnan(metrics[top][metric]):
        return set()
    by_pair = {frozenset((t.a, t.b)): t for t in tests}
    tied = {top}
    for source in order[1:]:
        if math.isnan(metrics[source][metric]):
            continue
        p = by_pair[frozenset((top, source))].holm_p(metric)
        if not p < ALPHA:  # NaN (no test possible) is no evidence of a difference
            tied.add(source)
    return tied
