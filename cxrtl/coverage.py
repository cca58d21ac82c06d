"""How often each reported 95 % interval covers the true value: the check behind :mod:`cxrtl.metrics`' choices.

Simulated test splits of 23 (13 COVID, the demo's), 100 and 1,453 (the study's size) images. Scores are
binormal (Normal images N(0, 1), COVID N(d, 1)), which gives a true ROC AUC of Phi(d / sqrt 2); at the threshold
d / 2, sensitivity and specificity both equal Phi(d / 2). The threshold metrics are simulated from their counts
(true sensitivity = true specificity = the value in the table), ROC AUC from the scores (true AUC = the value),
the bootstrapped metrics from calibrated COVID probabilities at the class mix, with their true values from one
large sample. Everything is vectorised over replicates, and the intervals are the ones the report uses.

Run it with ``cxrtl coverage`` (docs/notes-i23.md holds its table).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from cxrtl.metrics import (
    BOOTSTRAP_MIN_PER_CLASS,
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    INTERVAL_METHODS,
    NOT_ESTIMABLE,
    OPERATING_TARGET,
    clopper_pearson,
    newcombe_auc_interval,
    sens_spec_functions,
    sens_spec_intervals,
    stratified_resamples,
    weighted_probability_metrics,
)

# (images, COVID images): the demo's split, a small study, the study's test split at the Kaggle set's class mix.
SIZES = ((23, 13), (100, 57), (1453, 381))
TRUE_VALUES = (0.75, 0.9, 0.95, 0.99, 0.999)
BOOTSTRAPPED = ("pr_auc", "brier", "sensitivity_at_95_specificity", "specificity_at_95_sensitivity")


@dataclass(frozen=True)
class Row:
    metric: str
    method: str
    images: int
    covid: int
    true_value: float
    covered: int
    replicates: int
    median_width: float

    @property
    def coverage(self) -> float:
        return self.covered / self.replicates if self.replicates else math.nan


def _row(metric: str, n: int, pos: int, truth: float, low: np.ndarray, high: np.ndarray) -> Row:
    covered = int(np.sum((low <= truth) & (truth <= high)))
    return Row(metric, INTERVAL_METHODS[metric], n, pos, truth, covered, len(low), float(np.median(high - low)))


def threshold_rows(rng: np.random.Generator, replicates: int) -> Iterator[Row]:
    """Accuracy, sensitivity, specificity, balanced accuracy, precision and F1 from simulated counts."""
    for n, pos in SIZES:
        neg = n - pos
        for v in TRUE_VALUES:
            tp, tn = rng.binomial(pos, v, replicates), rng.binomial(neg, v, replicates)
            exact = {"accuracy": (tp + tn, n), "sensitivity": (tp, pos), "specificity": (tn, neg)}
            for name, (k, m) in exact.items():
                yield _row(name, n, pos, v, *clopper_pearson(k, m))
            truths = {name: float(f(v, v)) for name, f in sens_spec_functions(pos / n).items()}
            for name, (low, high) in sens_spec_intervals(tp, pos, tn, neg).items():
                yield _row(name, n, pos, truths[name], low, high)


def _scores(rng: np.random.Generator, replicates: int, pos: int, neg: int, d: float) -> np.ndarray:
    """Binormal scores, COVID images first: [replicates, pos + neg]."""
    return np.concatenate([rng.normal(d, 1, (replicates, pos)), rng.normal(0, 1, (replicates, neg))], axis=1)


def mann_whitney_auc(scores: np.ndarray, pos: int) -> np.ndarray:
    """Each row's AUC (COVID images in the first ``pos`` columns; continuous scores, so no ties)."""
    ranks = np.argsort(np.argsort(scores, axis=1), axis=1) + 1
    neg = scores.shape[1] - pos
    return (ranks[:, :pos].sum(axis=1) - pos * (pos + 1) / 2) / (pos * neg)


def auc_rows(rng: np.random.Generator, replicates: int) -> Iterator[Row]:
    """ROC AUC's interval on binormal scores."""
    for n, pos in SIZES:
        for v in TRUE_VALUES:
            auc = mann_whitney_auc(_scores(rng, replicates, pos, n - pos, math.sqrt(2) * norm.ppf(v)), pos)
            yield _row("roc_auc", n, pos, v, *newcombe_auc_interval(auc, pos, n - pos))


def _probabilities(scores: np.ndarray, d: float, prevalence: float) -> np.ndarray:
    """The calibrated COVID probability of a binormal score at the class mix."""
    return 1 / (1 + np.exp(-(math.log(prevalence / (1 - prevalence)) + d * scores - d * d / 2)))


def bootstrap_rows(rng: np.random.Generator, replicates: int) -> Iterator[Row]:
    """PR AUC, Brier score and the operating points, where a bootstrap interval is reported (enough images of
    each class), at true AUCs 0.9 to 0.999; their true values from one sample of 200,000 images."""
    for n, pos in SIZES:
        if min(pos, n - pos) < BOOTSTRAP_MIN_PER_CLASS:
            continue
        y = np.r_[np.ones(pos, int), np.zeros(n - pos, int)]
        weights = stratified_resamples(y, BOOTSTRAP_RESAMPLES, seed=0)
        tail = 100 * (1 - CONFIDENCE) / 2
        for v in TRUE_VALUES[1:]:
            d = math.sqrt(2) * norm.ppf(v)
            big_pos = 200_000 * pos // n
            big = _probabilities(_scores(rng, 1, big_pos, 200_000 - big_pos, d)[0], d, pos / n)
            big_y = np.r_[np.ones(big_pos), np.zeros(200_000 - big_pos)]
            population = weighted_probability_metrics(np.ones((1, 200_000)), big_y, big)
            truths = {k: float(m[0]) for k, m in population.items()}
            truths["sensitivity_at_95_specificity"] = float(norm.sf(norm.ppf(OPERATING_TARGET) - d))
            truths["specificity_at_95_sensitivity"] = truths["sensitivity_at_95_specificity"]
            bounds: dict[str, list] = {name: [] for name in BOOTSTRAPPED}
            for _ in range(replicates):
                p = _probabilities(_scores(rng, 1, pos, n - pos, d)[0], d, pos / n)
                resampled = weighted_probability_metrics(weights, y, p)
                for name in BOOTSTRAPPED:
                    bounds[name].append(np.nanpercentile(resampled[name], [tail, 100 - tail]))
            for name in BOOTSTRAPPED:
                low, high = np.array(bounds[name]).T
                yield _row(name, n, pos, truths[name], low, high)


def coverage_table(replicates: int = 2000, bootstrap_replicates: int = 200, seed: int = 0) -> list[Row]:
    rng = np.random.default_rng(seed)
    return [
        *threshold_rows(rng, replicates),
        *auc_rows(rng, replicates),
        *bootstrap_rows(rng, bootstrap_replicates),
    ]


def markdown(rows: list[Row]) -> str:
    """The table, with the metrics that have no interval at a size said so."""
    lines = [
        "| metric | method | n (COVID) | true value | covered | coverage | median width |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.metric} | {r.method} | {r.images} ({r.covid}) | {r.true_value:.3f} | "
            f"{r.covered:,}/{r.replicates:,} | {r.coverage:.3f} | {r.median_width:.3f} |"
        )
    small = ", ".join(f"{n} ({pos})" for n, pos in SIZES if min(pos, n - pos) < BOOTSTRAP_MIN_PER_CLASS)
    lines += [
        "",
        f"{', '.join(BOOTSTRAPPED)}: {NOT_ESTIMABLE} (no interval) at n = {small}, fewer than "
        f"{BOOTSTRAP_MIN_PER_CLASS} images of a class. ece: {NOT_ESTIMABLE} at every size.",
    ]
    return "\n".join(lines)
