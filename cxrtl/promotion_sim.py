"""How often promotion replaces the champion: with equally good challengers (false promotions) and with a
really better one (power), at the study's 1,453 test images (381 COVID).

Each replicate draws the test images' outcomes for the champion and ``k`` challengers, ranks the challengers with
:func:`cxrtl.compare.ranking`, and decides with :func:`cxrtl.selection.paired_test` and
:func:`cxrtl.selection.decide` at the margin 0.005, both at :func:`cxrtl.selection.promotion_level` (what
promotion does) and at the uncorrected 0.05 (what it did). Models' errors share a per-image difficulty
(correlation ``rho`` of the latent scores), as fine-tuned models of one architecture do; rho = 0 makes them
independent. Accuracy: an image is right when the model's latent score clears the quantile of its accuracy;
ROC AUC: binormal scores with COVID images shifted so that the AUC is the model's.

Run it with ``cxrtl promotion-sim`` (docs/notes-i23.md holds its table).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from cxrtl.compare import ALPHA, ranking
from cxrtl.coverage import mann_whitney_auc
from cxrtl.selection import decide, paired_test, promotion_level

IMAGES, COVID = 1453, 381
MARGIN = 0.005
CANDIDATES = (1, 10, 30)
# (metric, champion's true value, the one better challenger's true value or None when all are equal)
SCENARIOS = (
    ("accuracy", 0.98, None),
    ("accuracy", 0.98, 0.99),
    ("roc_auc", 0.98, None),
    ("roc_auc", 0.98, 0.99),
)


@dataclass(frozen=True)
class Row:
    metric: str
    rho: float
    candidates: int
    champion: float
    better: float | None
    promoted: int  # at promotion_level(candidates)
    promoted_uncorrected: int  # at ALPHA
    replicates: int


def _latent(rng: np.random.Generator, models: int, rho: float) -> np.ndarray:
    """[models, IMAGES] standard normal scores sharing a per-image component of variance ``rho``."""
    shared = rng.standard_normal(IMAGES)
    return math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.standard_normal((models, IMAGES))


def _probabilities(metric: str, truths: np.ndarray, latent: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each model's COVID probabilities: right exactly where its latent score says (accuracy), or binormal
    scores at its AUC through a logistic link (ROC AUC)."""
    if metric == "accuracy":
        correct = latent < norm.ppf(truths)[:, None]
        return np.where(correct, y, 1 - y).astype(np.float64)
    d = math.sqrt(2) * norm.ppf(truths)[:, None]
    return 1 / (1 + np.exp(-(latent + d * (y - 0.5))))


def _replicate(rng, metric: str, truths: np.ndarray, rho: float, y: np.ndarray) -> tuple[bool, bool]:
    """One run: (promoted at the corrected level, promoted at ALPHA); model 0 is the champion."""
    p = _probabilities(metric, truths, _latent(rng, len(truths), rho), y)
    # COVID images come first in ``y``; the scores are continuous, so the AUC needs no tie handling.
    values = ((p >= 0.5) == y).mean(axis=1) if metric == "accuracy" else mann_whitney_auc(p, int(y.sum()))
    scores = {f"{i:03d}": {"roc_auc": math.nan, "brier": math.nan, metric: float(values[i])} for i in range(1, len(p))}
    best = int(ranking(scores, metric)[0])
    test = paired_test(metric, y, p[best], p[0])
    level = promotion_level(len(truths) - 1)
    return tuple(decide(metric, MARGIN, values[best], values[0], test, a)[0] for a in (level, ALPHA))


def promotion_table(replicates: int = 200, rhos: tuple[float, ...] = (0.0, 0.5), seed: int = 0) -> Iterator[Row]:
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(COVID, int), np.zeros(IMAGES - COVID, int)]
    for metric, champion, better in SCENARIOS:
        for rho in rhos:
            for k in CANDIDATES:
                truths = np.full(k + 1, champion)
                if better is not None:
                    truths[1] = better
                outcomes = np.array([_replicate(rng, metric, truths, rho, y) for _ in range(replicates)])
                yield Row(metric, rho, k, champion, better, *(int(v) for v in outcomes.sum(axis=0)), replicates)


def markdown(rows: list[Row]) -> str:
    lines = [
        "| metric | rho | best of | champion | better challenger | promoted (corrected level) | "
        f"promoted at {ALPHA} (before) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        better = "none (all equal)" if r.better is None else f"one at {r.better}"
        lines.append(
            f"| {r.metric} | {r.rho} | {r.candidates} | {r.champion} | {better} | "
            f"{r.promoted}/{r.replicates} ({r.promoted / r.replicates:.3f}) | "
            f"{r.promoted_uncorrected}/{r.replicates} ({r.promoted_uncorrected / r.replicates:.3f}) |"
        )
    return "\n".join(lines)
