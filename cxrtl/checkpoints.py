"""Per-epoch training checkpoints in the store, so a retried or pre-empted task resumes where it stopped."""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cxrtl.errors import CxrtlError
from cxrtl.store import Store, keys

logger = logging.getLogger(__name__)


def new_run_id() -> str:
    """A run id for runs started by hand; pipeline runs use KFP's run id."""
    return time.strftime("local-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)


class CheckpointStore:
    """A checkpoint per epoch of one source's training in one run, plus the best model so far.

    The best model is saved before the epoch's checkpoint and named by its epoch, so a task killed between
    the two resumes from a checkpoint whose best model is still there.
    """

    def __init__(self, store: Store, run_id: str, source: str, keep: int = 1) -> None:
        self.store = store
        self.run_id = run_id
        self.source = source
        self.keep = keep
        self._identity: dict[str, Any] | None = None

    def claim(self, identity: dict[str, Any]) -> dict[str, Any]:
        """The identity the run id is held with: the one recorded by an earlier start, else ``identity``, now
        recorded. Every save checks that it still holds, so two runs of one id with other settings cannot
        both write (one that started in the same instant as another stops at its first save)."""
        key = keys.run_identity_key(self.run_id, self.source)
        if self.store.exists(key):
            return self.store.get_json(key)
        self.store.put_json(key, identity)
        self._identity = identity
        return identity

    def _check_claim(self) -> None:
        key = keys.run_identity_key(self.run_id, self.source)
        if self._identity is not None and self.store.get_json(key) != self._identity:
            raise CxrtlError(
                f"run {self.run_id}: another run of {self.source} with other settings took this run id; "
                "start a new run id instead"
            )

    def _epoch_key(self, epoch: int) -> str:
        return keys.checkpoint_key(self.run_id, self.source, epoch)

    def _best_key(self, epoch: int) -> str:
        return keys.best_checkpoint_key(self.run_id, self.source, epoch)

    def _found(self, prefix: str) -> list[int]:
        epochs = (keys.checkpoint_epoch(key) for key in self.store.list(prefix))
        return sorted(epoch for epoch in epochs if epoch is not None)

    def epochs(self) -> list[int]:
        return self._found(keys.checkpoints_prefix(self.run_id, self.source))

    def _best_epochs(self) -> list[int]:
        return self._found(keys.best_checkpoints_prefix(self.run_id, self.source))

    def save(self, epoch: int, payload: dict[str, Any]) -> None:
        """Save the epoch's checkpoint (its ``best`` names the best epoch so far), then prune what it supersedes."""
        self._check_claim()
        _put(self.store, self._epoch_key(epoch), payload)
        for old in self.epochs()[: -self.keep]:
            self.store.delete(self._epoch_key(old))
        for old in self._best_epochs():
            if old != payload["best"]["epoch"]:
                self.store.delete(self._best_key(old))
        logger.info("checkpoint of epoch %d saved to %s", epoch, self.store.url)

    def latest(self) -> dict[str, Any] | None:
        epochs = self.epochs()
        return get_payload(self.store, self._epoch_key(epochs[-1])) if epochs else None

    def save_best(self, epoch: int, payload: dict[str, Any]) -> None:
        self._check_claim()
        _put(self.store, self._best_key(epoch), payload)

    def best(self, epoch: int) -> dict[str, Any] | None:
        """The best model saved at ``epoch``; None once the run finished and dropped it."""
        key = self._best_key(epoch)
        return get_payload(self.store, key) if self.store.exists(key) else None

    def drop_best(self) -> None:
        """Once the final model is saved, the best-so-far copy serves no resume any more."""
        for epoch in self._best_epochs():
            self.store.delete(self._best_key(epoch))


def _put(store: Store, key: str, payload: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.pt"
        torch.save(payload, path)
        store.put_file(key, path)


def get_payload(store: Store, key: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.pt"
        store.get_file(key, path)
        # Our own files, but still data only: weights_only refuses anything that would run code.
        return torch.load(path, map_location="cpu", weights_only=True)
