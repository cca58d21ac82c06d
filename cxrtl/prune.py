"""``cxrtl store prune``: a retention policy for the store, so that it does not only grow.

What is never deleted: the weights, the dataset cache and the run state (inputs and bookkeeping, small or
costly to fetch again), everything under the champion's prefix, and the models and reports of every run
the champion's records name (its lineage). Of the rest:

- the last ``keep_runs`` runs that finished without a failed training keep their reports and models;
  older ones lose them;
- a run with a failed training keeps everything for ``failed_days`` (its finished trainings' models spare the
  rerun their training); after that, nothing of it is kept;
- a run's prepared dataset is deleted once the run has ended (it has a report or a failed training);
- a finished training's records (and any checkpoints it kept) go with the model they name; an unfinished
  training's checkpoints go once it was last claimed more than ``stale_days`` ago (until then the next run
  with the same data, weights and settings resumes it, so make this longer than the schedule's period).

A run's time is the latest of its models' ``trained_at`` and its failures' ``failed_at``; a run with neither
(still running, or stopped before it trained anything) is kept whole. Pruning lists what it would delete
and why; it deletes only when asked (``apply``).
"""

from __future__ import annotations

import calendar
import logging
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from cxrtl.errors import CxrtlError
from cxrtl.store import Store, keys

logger = logging.getLogger(__name__)

_TIME = "%Y-%m-%dT%H:%M:%SZ"
# With repeats, a run's trainings keep their models under RUN_ID-seedN (cxrtl.store.keys.training_run_id).
_SEED_SUFFIX = re.compile(r"-seed\d+$")
_DAY_S = 86400


@dataclass(frozen=True)
class PrunePolicy:
    keep_runs: int = 5
    failed_days: float = 1.0
    stale_days: float = 7.0

    def __post_init__(self) -> None:
        if self.keep_runs < 0:
            raise CxrtlError(f"--keep-runs must be 0 or more, got {self.keep_runs}")
        for name in ("failed_days", "stale_days"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise CxrtlError(f"--{name.replace('_', '-')} must be 0 or more days, got {getattr(self, name)}")


@dataclass
class _Run:
    run_id: str
    keys: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    failed: bool = False
    reported: bool = False

    @property
    def time(self) -> float | None:
        return max(self.times) if self.times else None


@dataclass
class PrunePlan:
    """What pruning deletes, each key with its reason, and how many keys it keeps."""

    delete: dict[str, str] = field(default_factory=dict)
    kept: int = 0

    def lines(self) -> list[str]:
        return [f"{key}  ({reason})" for key, reason in sorted(self.delete.items())]


def plan(store: Store, policy: PrunePolicy, now: float | None = None) -> PrunePlan:
    """What ``policy`` deletes from ``store`` now."""
    now = time.time() if now is None else now
    lineage = _champion_lineage(store)
    runs = _runs(store)
    result = PrunePlan()

    finished = sorted((r for r in runs.values() if r.reported and not r.failed), key=lambda r: r.time or now)
    recent = {r.run_id for r in finished[len(finished) - policy.keep_runs :]} if policy.keep_runs else set()
    for run in runs.values():
        age_days = (now - run.time) / _DAY_S if run.time is not None else None
        for key in run.keys:
            if _in_lineage(key, lineage):
                continue
            reason = None
            if key.startswith(keys.prepared_prefix(run.run_id)) and (run.reported or run.failed):
                reason = "prepared data of a run that has ended"
            elif run.failed and age_days is not None and age_days > policy.failed_days:
                reason = f"run with a failed training, {age_days:.1f} days old"
            elif run.reported and not run.failed and run.run_id not in recent:
                reason = f"not among the last {policy.keep_runs} runs"
            if reason:
                result.delete[key] = reason

    for records in _trainings(store).values():
        done, owner = records.get(keys.DONE_FILE), records.get(keys.OWNER_FILE)
        if done is not None:
            model = done.get("model_key", "")
            if not store.exists(model) or model in result.delete:
                for key in records["keys"]:
                    result.delete[key] = "finished training whose model is gone"
            continue
        claimed = _parse_time(owner.get("claimed_at")) if owner else None
        if claimed is not None and (now - claimed) / _DAY_S > policy.stale_days:
            for key in records["keys"]:
                result.delete[key] = f"unfinished training, last claimed {(now - claimed) / _DAY_S:.1f} days ago"
    for key in list(result.delete):
        if key.startswith(_PROTECTED):  # whatever the rules above say
            del result.delete[key]
    result.kept = len(store.list()) - len(result.delete)
    return result


def prune(store: Store, policy: PrunePolicy, apply: bool = False, now: float | None = None) -> PrunePlan:
    """Plan, and with ``apply`` delete, logging each key."""
    result = plan(store, policy, now)
    for key, reason in sorted(result.delete.items()):
        if apply:
            store.delete(key)
        logger.info("%s %s (%s)", "deleted" if apply else "would delete", key, reason)
    return result


_PROTECTED = (keys.champion_prefix(), keys.weights_prefix(), "datasets/", "state/")


def _runs(store: Store) -> dict[str, _Run]:
    runs: dict[str, _Run] = {}

    def run(training_run_id: str) -> _Run:
        run_id = _SEED_SUFFIX.sub("", training_run_id)
        return runs.setdefault(run_id, _Run(run_id))

    for key in store.list(keys.models_prefix()):
        parts = key.split("/")  # models/SOURCE/RUN_ID/NAME
        if len(parts) == 4:
            r = run(parts[2])
            r.keys.append(key)
            if parts[3] == "model.json":
                r.times += [t for t in [_parse_time(_json(store, key).get("trained_at"))] if t is not None]
    for key in store.list(keys.reports_prefix()):
        r = run(key.split("/")[1])
        r.keys.append(key)
        r.reported = True
    for key in store.list(keys.runs_prefix()):
        parts = key.split("/")  # runs/RUN_ID/SOURCE/NAME
        r = run(parts[1])
        r.keys.append(key)
        if key.endswith("/failed.json"):
            r.failed = True
            r.times += [t for t in [_parse_time(_json(store, key).get("failed_at"))] if t is not None]
    for key in store.list("prepared/"):
        run(key.split("/")[1]).keys.append(key)
    return runs


def _trainings(store: Store) -> dict[str, dict[str, Any]]:
    trainings: dict[str, dict[str, Any]] = defaultdict(lambda: {"keys": []})
    for key in store.list(keys.trainings_prefix()):
        name = key.rsplit("/", 1)[1]
        prefix = "/".join(key.split("/")[:3])  # trainings/SOURCE/TRAINING
        trainings[prefix]["keys"].append(key)
        if key == f"{prefix}/{keys.DONE_FILE}" or key == f"{prefix}/{keys.OWNER_FILE}":
            trainings[prefix][name] = _json(store, key)
    return trainings


def _champion_lineage(store: Store) -> set[tuple[str, str]]:
    """(source, run id) of every model the champion's records name, whatever their layout."""
    found: set[tuple[str, str]] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("source"), str) and isinstance(value.get("run_id"), str):
                found.add((value["source"], value["run_id"]))
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for key in store.list(keys.champion_prefix()):
        if key.endswith(".json"):
            walk(_json(store, key))
    return found


def _in_lineage(key: str, lineage: set[tuple[str, str]]) -> bool:
    """A model of the champion's lineage, or the report of the run that made it."""
    parts = key.split("/")
    if key.startswith(keys.models_prefix()) and len(parts) == 4:
        return (parts[1], parts[2]) in lineage
    if key.startswith(keys.reports_prefix()):
        return any(_SEED_SUFFIX.sub("", run_id) == parts[1] for _, run_id in lineage)
    return False


def _json(store: Store, key: str) -> Any:
    try:
        return store.get_json(key)
    except CxrtlError:  # a damaged record: pruning goes on, by the other rules
        logger.warning("%s: %s is not readable JSON; pruning ignores what it says", store.url, key)
        return {}


def _parse_time(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return calendar.timegm(time.strptime(text, _TIME))
    except ValueError:
        return None
