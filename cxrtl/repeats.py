"""A run's trainings grouped by weight source: with ``repeats`` > 1, several training seeds per source.

Fine-tuning varies from seed to seed by about as much as the sources differ, so a source is ranked by its
mean over seeds, and the spread shows how much of a difference is noise. The champion candidate is one
concrete model: the best seed (by the metric, then ROC AUC) of the source with the best mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cxrtl.compare import ranking
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import Evaluation
from cxrtl.metrics import METRIC_NAMES


@dataclass
class SourceResults:
    source: str
    evaluations: list[Evaluation]  # one per training seed, in seed order

    @property
    def seeds(self) -> list[int]:
        return [ev.result.model.config.seed for ev in self.evaluations]

    def mean(self) -> dict[str, float]:
        """Each metric's mean over the seeds (NaN where a seed's is undefined)."""
        return {m: float(np.mean([ev.metrics[m] for ev in self.evaluations])) for m in METRIC_NAMES}

    def sd(self, metric: str) -> float:
        """The sample standard deviation of ``metric`` over the seeds; NaN with one seed."""
        values = [ev.metrics[metric] for ev in self.evaluations]
        return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan

    def best(self, metric: str) -> Evaluation:
        """The best seed: first by :func:`cxrtl.compare.ranking` (metric, ROC AUC, Brier score, then seed)."""
        by_seed = {f"{seed:09d}": ev for seed, ev in zip(self.seeds, self.evaluations, strict=True)}
        return by_seed[ranking({s: ev.metrics for s, ev in by_seed.items()}, metric)[0]]


def by_source(evaluations: list[Evaluation], metric: str = "accuracy") -> list[SourceResults]:
    """The evaluations grouped by source, best mean ``metric`` first (:func:`cxrtl.compare.ranking`); a training
    (source, seed, run) once."""
    groups: dict[str, list[Evaluation]] = {}
    seen = set()
    for ev in evaluations:
        model = ev.result.model
        training = (model.source, model.config.seed, model.run_id)
        if training in seen:
            raise CxrtlError(
                f"two results for weight source {model.source!r} with training seed {model.config.seed} from run "
                f"{model.run_id}; give each training once"
            )
        seen.add(training)
        groups.setdefault(model.source, []).append(ev)
    results = {
        source: SourceResults(source, sorted(evs, key=lambda ev: ev.result.model.config.seed))
        for source, evs in groups.items()
    }
    return [results[s] for s in ranking({s: r.mean() for s, r in results.items()}, metric)]


def champion_candidate(evaluations: list[Evaluation], metric: str) -> Evaluation:
    """The best seed of the source with the best mean ``metric``."""
    if not evaluations:
        raise CxrtlError("no evaluated models to promote")
    return by_source(evaluations, metric)[0].best(metric)
