"""Per-epoch training checkpoints in the store, so a retried or pre-empted task resumes where it stopped."""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cxrtl.store import Store

logger = logging.getLogger(__name__)

_EPOCH_FILE = re.compile(r"/epoch-(\d{3,})\.pt$")
_BEST_FILE = re.compile(r"/best-epoch-(\d{3,})\.pt$")


def new_run_id() -> str:
    """A run id for runs started by hand; pipeline runs use KFP's run id."""
    return time.strftime("local-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)


def run_prefix(run_id: str, source: str) -> str:
    return f"runs/{run_id}/{source}"


class CheckpointStore:
    """``runs/RUN_ID/SOURCE/checkpoints/epoch-NNN.pt``, plus ``best-epoch-NNN.pt``: the best model so far.

    The best model is saved before the epoch's checkpoint and named by its epoch, so a task killed between
    the two resumes from a checkpoint whose best model is still there.
    """

    def __init__(self, store: Store, run_id: str, source: str, keep: int = 1) -> None:
        self.store = store
        self.prefix = run_prefix(run_id, source)
        self.keep = keep

    def _epoch_key(self, epoch: int) -> str:
        return f"{self.prefix}/checkpoints/epoch-{epoch:03d}.pt"

    def _best_key(self, epoch: int) -> str:
        return f"{self.prefix}/best-epoch-{epoch:03d}.pt"

    def _found(self, pattern: re.Pattern, prefix: str) -> list[int]:
        matches = (pattern.search(key) for key in self.store.list(prefix))
        return sorted(int(m.group(1)) for m in matches if m)

    def epochs(self) -> list[int]:
        return self._found(_EPOCH_FILE, f"{self.prefix}/checkpoints/")

    def save(self, epoch: int, payload: dict[str, Any]) -> None:
        """Save the epoch's checkpoint (its ``best`` names the best epoch so far), then prune what it supersedes."""
        _put(self.store, self._epoch_key(epoch), payload)
        for old in self.epochs()[: -self.keep]:
            self.store.delete(self._epoch_key(old))
        for old in self._found(_BEST_FILE, f"{self.prefix}/best-"):
            if old != payload["best"]["epoch"]:
                self.store.delete(self._best_key(old))
        logger.info("checkpoint of epoch %d saved to %s", epoch, self.store.url)

    def latest(self) -> dict[str, Any] | None:
        epochs = self.epochs()
        return get_payload(self.store, self._epoch_key(epochs[-1])) if epochs else None

    def save_best(self, epoch: int, payload: dict[str, Any]) -> None:
        _put(self.store, self._best_key(epoch), payload)

    def best(self, epoch: int) -> dict[str, Any] | None:
        """The best model saved at ``epoch``; None once the run finished and dropped it."""
        key = self._best_key(epoch)
        return get_payload(self.store, key) if self.store.exists(key) else None

    def drop_best(self) -> None:
        """Once the final model is saved, the best-so-far copy serves no resume any more."""
        for epoch in self._found(_BEST_FILE, f"{self.prefix}/best-"):
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
