"""Promotion's decisions: the paired test against the champion at a level that allows for the choice of the
challenger, and the floor a first champion must clear.

The challenger is the best of the run's candidates (sources x repeats), ranked on the test images it is then
tested on. Testing that winner at :data:`cxrtl.compare.ALPHA` promotes an equally good model far more often than
ALPHA (best of 10: about 12 %, of 30: about 25 %, by ``cxrtl promotion-sim``): the best of many equal models
looks better than the champion by chance. The test is therefore run at ALPHA divided by the number of candidates
(Bonferroni): whichever candidate wins the ranking, the chance that any of them passes its own test while no
candidate is better is at most ALPHA, so the ranking and its tie rule stay as they are. The margin is kept too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cxrtl.compare import ALPHA, delong, mcnemar_exact

# What a first champion (no champion to beat) must show: the lower 95 % bound of each of these above chance.
FLOOR_METRICS = ("balanced_accuracy", "roc_auc")
CHANCE = 0.5


def promotion_level(candidates: int, alpha: float = ALPHA) -> float:
    """The level the chosen challenger's paired test must reach when it was chosen from ``candidates`` models."""
    return alpha / max(1, candidates)


def paired_test(metric: str, y: np.ndarray, p_challenger: np.ndarray, p_champion: np.ndarray) -> dict[str, Any]:
    """The paired test of two models on the same images: DeLong's for ROC AUC, McNemar's exact test on which
    images each gets right (at the 0.5 threshold) for every other metric."""
    if metric == "roc_auc":
        return {"name": "DeLong", "p_value": delong(y, p_challenger, p_champion)[1]}
    correct = [(p >= 0.5).astype(int) == y for p in (p_challenger, p_champion)]
    return {"name": "McNemar exact", "p_value": mcnemar_exact(*correct)}


def decide(
    metric: str, margin: float, challenger: float, champion: float, test: dict[str, Any], alpha: float = ALPHA
) -> tuple[bool, str]:
    """Better by more than ``margin`` and by the paired test at ``alpha``, or the champion stays."""
    if math.isnan(challenger) or math.isnan(champion):
        return False, f"{metric} is undefined for one of them; the champion stays"
    if not challenger > champion + margin:
        return False, f"not better by more than the margin {margin}; the champion stays"
    if not test["p_value"] < alpha:  # NaN: no test possible, no evidence
        return (
            False,
            f"better by more than {margin}, but the paired test does not tell them apart at level {alpha:.3g}; "
            "the champion stays",
        )
    return True, f"better by more than {margin} and by the paired test at level {alpha:.3g}; promoted"


def first_champion_floor(intervals_95: dict[str, list[float]]) -> tuple[bool, str]:
    """Whether a model may become the first champion: the lower bound of each of :data:`FLOOR_METRICS` above
    :data:`CHANCE` (a model the test images cannot tell from a coin is no champion); the reason, in words."""
    shown = []
    for name in FLOOR_METRICS:
        low, high = intervals_95.get(name, (math.nan, math.nan))
        shown.append(f"{name} 95 % interval {low:.3f}-{high:.3f}")
        if not low > CHANCE:  # NaN (undefined) is no evidence either
            return False, (
                f"no champion: the first champion must have the lower 95 % bound of "
                f"{' and '.join(FLOOR_METRICS)} above {CHANCE}, and its {shown[-1]} is not"
            )
    return True, f"above the floor ({'; '.join(shown)})"
