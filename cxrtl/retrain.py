"""Whether a scheduled run has anything new to learn from: the dataset, the weights, the code or the settings."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cxrtl
from cxrtl import champion
from cxrtl.errors import CxrtlError
from cxrtl.store import Store, keys
from cxrtl.weights.registry import check_sources
from cxrtl.weights.stored import current_record, missing_weights, weights_commands

logger = logging.getLogger(__name__)


def code_fingerprint() -> str:
    """The package version plus a hash of its sources, so an unreleased code change counts too."""
    root = Path(cxrtl.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{cxrtl.__version__}+{digest.hexdigest()[:12]}"


def sources_to_train(store: Store, sources: list[str], skip_missing: bool = False) -> tuple[list[str], list[str]]:
    """The sources whose weights are in the store, verified, and those left out (only with ``skip_missing``).

    Checked before any GPU is asked for: a source without weights would otherwise fail on its GPU, be
    retried, and fail the whole run after the others trained. The error says what to run.
    """
    check_sources(sources)
    missing = missing_weights(store, sources)
    ready = [s for s in sources if s not in missing]
    if not missing:
        return ready, []
    if skip_missing and ready:
        logger.warning("no verified weights in %s for %s: training without them", store.url, ", ".join(missing))
        return ready, missing
    which = "any requested source" if not ready else f"{len(missing)} of {len(sources)} sources"
    hint = "" if skip_missing else "; or set the pipeline parameter skip_missing_weights=true to train without them"
    raise CxrtlError(
        f"no verified weights in {store.url} for {which} ({', '.join(missing)}): put them there first with "
        f"{'; '.join(f'`{c}`' for c in weights_commands(store.url, missing))}{hint}"
    )


def weights_fingerprint(store: Store, sources: list[str]) -> dict[str, str | None]:
    """Each source's current weight file by its sha256 (None: none stored), as ``cxrtl weights put`` set it."""
    return {source: (current_record(store, source) or {}).get("sha256") for source in sources}


def run_fingerprint(
    dataset: dict[str, Any], settings: dict[str, Any], weights: dict[str, str | None]
) -> dict[str, Any]:
    """What a run's result depends on: dataset version and sha256, each source's weights, code, and the
    training settings."""
    return {
        "dataset_version": dataset.get("version"),
        "dataset_sha256": dataset.get("sha256"),
        "weights": weights,
        "code": code_fingerprint(),
        "settings": settings,
    }


@dataclass
class ChangeCheck:
    changed: bool
    reason: str


def check_for_changes(store: Store, fingerprint: dict[str, Any], run_id: str, force: bool = False) -> ChangeCheck:
    """Compare with the last successful run. A run that goes on to train leaves its fingerprint in the
    store for :func:`record_success` to adopt when it finishes.

    First the champion is verified: a damaged one would otherwise fail the run at promotion, after all the
    training (:class:`cxrtl.champion.ChampionDamaged`, naming the command that resets it)."""
    champion.check(store)
    check = _compare(last_success(store), fingerprint, force)
    if check.changed:
        store.put_json(keys.pending_run_key(run_id), fingerprint)
    return check


def _compare(last: dict[str, Any] | None, fingerprint: dict[str, Any], force: bool) -> ChangeCheck:
    if force:
        return ChangeCheck(True, "retraining forced")
    if last is None:
        return ChangeCheck(True, "no earlier successful run")
    previous = last.get("fingerprint", {})
    differences = [_difference(key, previous.get(key), fingerprint[key]) for key in fingerprint]
    differences = [d for d in differences if d]
    if differences:
        return ChangeCheck(True, f"changed since run {last.get('run_id')}: {', '.join(differences)}")
    return ChangeCheck(
        False,
        f"dataset {fingerprint['dataset_version']}, weights, code {fingerprint['code']} and settings are unchanged "
        f"since run {last.get('run_id')} ({last.get('finished_at')}): nothing to retrain",
    )


def _difference(key: str, before: Any, now: Any) -> str | None:
    """``key`` where it changed, the weights with the sources whose file changed; None where it did not."""
    if before == now:
        return None
    if key == "weights" and isinstance(before, dict):
        return f"weights of {', '.join(s for s in now if before.get(s) != now[s])}"
    return key


def record_success(store: Store, run_id: str) -> None:
    """Make ``run_id``'s fingerprint, left by :func:`check_for_changes`, the one later runs compare with.

    Idempotent: a retry after a crash at any point (even after the pending fingerprint was removed) ends the same.
    """
    pending = keys.pending_run_key(run_id)
    last = last_success(store)
    if last is not None and last.get("run_id") == run_id:
        store.delete(pending)
        logger.info("run %s was recorded as the last successful one already", run_id)
        return
    fingerprint = store.get_json(pending)
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store.put_json(keys.last_success_key(), {"run_id": run_id, "finished_at": finished, "fingerprint": fingerprint})
    store.delete(pending)
    logger.info("run %s recorded as the last successful one", run_id)


def last_success(store: Store) -> dict[str, Any] | None:
    key = keys.last_success_key()
    return store.get_json(key) if store.exists(key) else None
