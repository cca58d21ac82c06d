"""A run that goes on when some of its trainings fail: each failure recorded, the others evaluated, reported
and (if asked) promoted, and the run then failing with one line naming what failed.

Kubeflow Pipelines cannot do this by itself: a task that fails inside a ``ParallelFor`` fails the loop, and a
task consuming ``dsl.Collected`` outputs can neither skip the failed iteration nor run after it
(``.ignore_upstream_failure()`` needs a default for every upstream input, which a collected list has not;
kfp.local, like the cluster, skips it). So a train task catches its training's failure, records it here (in
the store, and in the small artifact it hands on), and ends successfully; every later step passes the failure
along; the run's last step fails the run, after the report. A SIGTERM is not caught: that task must exit
non-zero so that KFP retries it, from its checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cxrtl.errors import CxrtlError
from cxrtl.store import Store, keys

logger = logging.getLogger(__name__)

FAILURE_FILE = "failed.json"  # in a step's output folder, instead of its result


@dataclass(frozen=True)
class TrainingFailure:
    """One training that failed: which, in which run, and the one line that says why."""

    source: str
    seed: int
    run_id: str  # the training's run id (RUN_ID-seedN with repeats)
    error: str
    failed_at: str

    @classmethod
    def of(cls, source: str, seed: int, run_id: str, exc: BaseException) -> TrainingFailure:
        # A CxrtlError is already the one line meant for a person; anything else is named by its type.
        error = str(exc) if isinstance(exc, CxrtlError) else f"{type(exc).__name__}: {exc}"
        return cls(source, seed, run_id, error.splitlines()[0] if error else type(exc).__name__, _now())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainingFailure:
        return cls(**json.loads(text))

    def label(self) -> str:
        return f"{self.source} (seed {self.seed})"


class RunFailed(CxrtlError):
    """The run's trainings that failed, raised once everything else is done."""


def record_failure(store: Store, failure: TrainingFailure) -> None:
    """Keep ``failure`` in the store (for `cxrtl store prune` and whoever looks), and log it."""
    store.put_json(keys.failure_key(failure.run_id, failure.source), json.loads(failure.to_json()))
    logger.error("%s: training failed in run %s: %s", failure.label(), failure.run_id, failure.error)


def clear_failure(store: Store, run_id: str, source: str) -> None:
    """A retry that succeeded: its earlier failure no longer holds."""
    store.delete(keys.failure_key(run_id, source))


def write_failure(folder: Path, failure: TrainingFailure) -> None:
    """Mark an output folder as standing for ``failure`` rather than a result."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FAILURE_FILE).write_text(failure.to_json() + "\n")


def read_failure(folder: Path) -> TrainingFailure | None:
    """The failure an output folder stands for; None for a result."""
    path = Path(folder) / FAILURE_FILE
    return TrainingFailure.from_json(path.read_text()) if path.is_file() else None


def failures_note(failures: list[TrainingFailure]) -> str:
    """The report's line about the trainings that failed."""
    return "Failed, left out of this report: " + "; ".join(f"{f.label()}: {f.error}" for f in failures)


def promotion_withheld_note(failures: list[TrainingFailure], finished: int) -> str:
    """The report's promotion line when nothing was put to promotion."""
    if not finished:
        return "Promotion: none, no training finished"
    return (
        f"Promotion: none, {len(failures)} training{'s' if len(failures) > 1 else ''} failed "
        "(promote_despite_failures=true promotes among those that finished)"
    )


def check_run(failures: list[TrainingFailure], report: str | None) -> None:
    """Fail the run, naming every training that failed and where the report of the others is."""
    if not failures:
        return
    where = f"; the report of the others: {report}" if report else "; no training finished, so no report"
    raise RunFailed(
        f"{len(failures)} training{'s' if len(failures) > 1 else ''} failed: "
        + "; ".join(f"{f.label()}: {f.error}" for f in failures)
        + where
        + ". A rerun with the same data, weights and settings trains only these"
    )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
