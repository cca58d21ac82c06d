"""Training checkpoints in the store, keyed by what the training is, so that a retried or pre-empted task, or
the next run with the same data, weights and settings, resumes where it stopped.

Writes go through a :class:`BackgroundWriter`: one thread, one write at a time (so never two writes of
one key at once), and a bounded queue, so training runs on while the previous checkpoint uploads and
waits only when ``depth`` checkpoints are already waiting. Payloads are copied to host memory before they
are queued: training goes on changing the tensors they came from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cxrtl.errors import CxrtlError
from cxrtl.files import DiskError, writing
from cxrtl.store import Store, keys

logger = logging.getLogger(__name__)

# Checkpoints waiting behind the one being written. One is enough for training never to wait on a store
# that writes a checkpoint faster than an epoch runs, and bounds the host memory held by copies.
QUEUE_DEPTH = 1
# A training's key: 80 bits of its identity's SHA-256, short enough to read in a store listing.
TRAINING_ID_HEX = 20


def new_run_id() -> str:
    """A run id for runs started by hand; pipeline runs use KFP's run id."""
    return time.strftime("local-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)


class BackgroundWriter:
    """Runs jobs one after another on a thread of its own, with at most ``depth`` jobs waiting.

    A job's error is raised in the submitting thread at the next :meth:`submit` or :meth:`flush`.
    """

    def __init__(self, depth: int = QUEUE_DEPTH) -> None:
        self.depth = depth
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="checkpoint-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; blocks while ``depth`` jobs are already waiting."""
        self._check()
        self._queue.put(job)

    def flush(self) -> None:
        """Wait until every job submitted is done."""
        self._queue.join()
        self._check()

    def close(self, finish: bool = True) -> None:
        """Stop the thread after the jobs waiting (``finish``) or only after the job under way, so that no
        upload is cut off half-way (an interrupted S3 upload would leave its parts on the server)."""
        if not finish:
            while True:
                try:
                    self._queue.get_nowait()
                    self._queue.task_done()
                except queue.Empty:
                    break
        self._queue.put(None)
        self._thread.join()

    def _check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                if self._error is None:  # after a failure, later checkpoints would only hide it
                    job()
            except BaseException as exc:  # handed to the training thread, which decides
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()


def training_id(identity: dict[str, Any]) -> str:
    """The key of a training in the store: a hash of its identity (what produced it), so that any run with the
    same data, weights and settings finds it, and a run with any difference finds another."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:TRAINING_ID_HEX]


class CheckpointStore:
    """Checkpoints of one training (one source, one identity), plus the best model so far.

    The training is keyed by ``identity`` (:func:`training_id`), not by the run: a later run with the same
    identity resumes it. ``run_id`` is the run training it now; it owns the training from :meth:`claim` on,
    and every save checks that it still does. The best model is written before the checkpoint that names
    it, so a task killed between the two resumes from a checkpoint whose best model is there. ``keep``:
    checkpoints left once the training is done.
    """

    def __init__(self, store: Store, run_id: str, source: str, identity: dict[str, Any], keep: int = 0) -> None:
        self.store = store
        self.run_id = run_id
        self.source = source
        self.identity = identity
        self.training = training_id(identity)
        self.keep = keep
        self._claimed = False
        self.previous_owner: str | None = None  # the run that held the training before this one claimed it
        self._writer: BackgroundWriter | None = None

    def _record_key(self, name: str) -> str:
        return keys.training_record_key(self.source, self.training, name)

    def claim(self) -> dict[str, Any]:
        """Hold the run id and the training for this run; returns the identity the run id was first held with
        (the one recorded by an earlier start, else ours, now recorded), for the caller to compare.

        Every save checks that both still hold, so two runs of one id with other identities cannot both
        write (one that started in the same instant as another stops at its first save), nor can two runs
        write one training's checkpoints (the one that took it over last goes on; the other stops)."""
        run_key = keys.run_identity_key(self.run_id, self.source)
        if self.store.exists(run_key):
            held = self.store.get_json(run_key)
        else:
            self.store.put_json(run_key, self.identity)
            held = self.identity
        if held != self.identity:
            return held
        training_key = self._record_key(keys.IDENTITY_FILE)
        if not self.store.exists(training_key):
            self.store.put_json(training_key, self.identity)
        elif self.store.get_json(training_key) != self.identity:  # a hash collision, or a hand-edited file
            raise CxrtlError(
                f"{self.store.url}: {training_key} holds another identity than its key says; "
                f"remove {keys.training_prefix(self.source, self.training)} (`cxrtl store prune`)"
            )
        owner_key = self._record_key(keys.OWNER_FILE)
        owner = self.store.get_json(owner_key).get("run_id") if self.store.exists(owner_key) else None
        self.previous_owner = owner
        if owner not in (None, self.run_id):
            logger.info("%s: run %s takes over training %s from run %s", self.source, self.run_id, self.training, owner)
        # When it was claimed: `cxrtl store prune` drops an unfinished training left alone for long enough.
        self.store.put_json(
            owner_key, {"run_id": self.run_id, "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        )
        self._claimed = True
        return held

    def _check_claim(self) -> None:
        if not self._claimed:
            return
        if self.store.get_json(keys.run_identity_key(self.run_id, self.source)) != self.identity:
            raise CxrtlError(
                f"run {self.run_id}: another run of {self.source} with other settings took this run id; "
                "start a new run id instead"
            )
        owner = self.store.get_json(self._record_key(keys.OWNER_FILE)).get("run_id")
        if owner != self.run_id:
            raise CxrtlError(
                f"run {self.run_id}: run {owner} took over the training of {self.source} with the same data, "
                f"weights and settings ({keys.training_prefix(self.source, self.training)}); it goes on, this one stops"
            )

    def _epoch_key(self, epoch: int) -> str:
        return keys.checkpoint_key(self.source, self.training, epoch)

    def _best_key(self, epoch: int) -> str:
        return keys.best_checkpoint_key(self.source, self.training, epoch)

    def _found(self, prefix: str) -> list[int]:
        epochs = (keys.checkpoint_epoch(key) for key in self.store.list(prefix))
        return sorted(epoch for epoch in epochs if epoch is not None)

    def epochs(self) -> list[int]:
        return self._found(keys.checkpoints_prefix(self.source, self.training))

    def _best_epochs(self) -> list[int]:
        return self._found(keys.best_checkpoints_prefix(self.source, self.training))

    @contextmanager
    def in_background(self, depth: int = QUEUE_DEPTH) -> Iterator[BackgroundWriter]:
        """Within this block :meth:`save` queues its writes; leaving it waits for them (on an error, only
        for the one under way)."""
        self._writer = BackgroundWriter(depth)
        try:
            yield self._writer
        except BaseException:
            self._writer.close(finish=False)
            raise
        else:
            self._writer.flush()
            self._writer.close()
        finally:
            self._writer = None

    def save(self, epoch: int, payload: dict[str, Any], best: dict[str, Any] | None = None) -> None:
        """Save checkpoint ``epoch`` (after ``best``, the best model it names, if that is new), then prune
        what it supersedes: older checkpoints (``keep`` of them stay, at least one) and other best models."""
        payload, best = _to_host(payload), _to_host(best)

        def write() -> None:
            self._check_claim()
            if best is not None:
                _put(self.store, self._best_key(best["epoch"]), best)
            _put(self.store, self._epoch_key(epoch), payload)
            for old in self.epochs()[: -max(1, self.keep)]:
                self.store.delete(self._epoch_key(old))
            for old in self._best_epochs():
                if old != payload["best"]["epoch"]:
                    self.store.delete(self._best_key(old))
            logger.info("checkpoint of epoch %d saved to %s", epoch, self.store.url)

        if self._writer is None:
            write()
        else:
            self._writer.submit(write)

    def latest(self) -> dict[str, Any] | None:
        epochs = self.epochs()
        return get_payload(self.store, self._epoch_key(epochs[-1])) if epochs else None

    def best(self, epoch: int) -> dict[str, Any] | None:
        """The best model saved at ``epoch``; None once the training finished and dropped it."""
        key = self._best_key(epoch)
        return get_payload(self.store, key) if self.store.exists(key) else None

    def done(self) -> dict[str, Any] | None:
        """The record :meth:`finish` left (the run that published the model, and how it trained); None if the
        training never finished."""
        key = self._record_key(keys.DONE_FILE)
        return self.store.get_json(key) if self.store.exists(key) else None

    def reset(self) -> None:
        """Drop the training's checkpoints, best models and done record, to start it afresh."""
        self._check_claim()
        for key in self.store.list(keys.training_prefix(self.source, self.training)):
            if key.rsplit("/", 1)[-1] not in (keys.IDENTITY_FILE, keys.OWNER_FILE):
                self.store.delete(key)

    def finish(self, done: dict[str, Any]) -> None:
        """Once the final model is published: record ``done`` (where it is), then drop the best-so-far copy
        and the checkpoints beyond ``keep``."""
        self._check_claim()
        self.store.put_json(self._record_key(keys.DONE_FILE), done)
        for epoch in self._best_epochs():
            self.store.delete(self._best_key(epoch))
        epochs = self.epochs()
        for epoch in epochs[: len(epochs) - self.keep]:
            self.store.delete(self._epoch_key(epoch))


class CheckpointPolicy:
    """When to checkpoint: at most once every ``minutes`` (0: every epoch), and always after the last epoch.

    (A SIGTERM checkpoints too, whatever the time.)
    """

    def __init__(self, minutes: float) -> None:
        self.interval_s = minutes * 60
        self._last = time.monotonic()

    def due(self, last_epoch: bool) -> bool:
        return last_epoch or time.monotonic() - self._last >= self.interval_s

    def saved(self) -> None:
        self._last = time.monotonic()


def _to_host(value: Any) -> Any:
    """``value`` with every tensor copied to host memory, so training may change the originals."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    return value


def _put(store: Store, key: str, payload: dict[str, Any]) -> None:
    """Write a checkpoint. On a full or read-only disk (TMPDIR or the store) training goes on without it, after
    one warning: a checkpoint only saves time on a resume, and the model at the end is what the run is for (if
    the disk is still full then, that write fails in one line)."""
    try:
        with tempfile.TemporaryDirectory(prefix="cxrtl-checkpoint-") as tmp:
            path = Path(tmp) / "payload.pt"
            with writing(f"checkpoint {key}", path):
                torch.save(payload, path)
            store.put_file(key, path)
    except DiskError as exc:
        logger.warning("%s; training goes on without this checkpoint", exc)


def get_payload(store: Store, key: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.pt"
        store.get_file(key, path)
        # Our own files, but still data only: weights_only refuses anything that would run code.
        return torch.load(path, map_location="cpu", weights_only=True)


def run_training_prefix(store: Store, run_id: str, source: str) -> str | None:
    """Where the training ``run_id`` claimed for ``source`` keeps its checkpoints; None if it claimed none."""
    key = keys.run_identity_key(run_id, source)
    return keys.training_prefix(source, training_id(store.get_json(key))) if store.exists(key) else None
