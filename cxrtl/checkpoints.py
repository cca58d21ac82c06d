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

_EPOCH_FILE = re.compile(r"epoch-(\d{3,})\.pt$")


def new_run_id() -> str:
    """A run id for runs started by hand; pipeline runs use KFP's run id."""
    return time.strftime("local-%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(2)


def run_prefix(run_id: str, source: str) -> str:
    return f"runs/{run_id}/{source}"


class CheckpointStore:
    """``runs/RUN_ID/SOURCE/checkpoints/epoch-NNN.pt`` plus ``best.pt``, the best model so far."""

    def __init__(self, store: Store, run_id: str, source: str, keep: int = 1) -> None:
        self.store = store
        self.prefix = run_prefix(run_id, source)
        self.keep = keep

    def _epoch_key(self, epoch: int) -> str:
        return f"{self.prefix}/checkpoints/epoch-{epoch:03d}.pt"

    @property
    def best_key(self) -> str:
        return f"{self.prefix}/best.pt"

    def epochs(self) -> list[int]:
        found = (_EPOCH_FILE.search(key) for key in self.store.list(f"{self.prefix}/checkpoints/"))
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, epoch: int, payload: dict[str, Any]) -> None:
        _put(self.store, self._epoch_key(epoch), payload)
        for old in self.epochs()[: -self.keep]:
            self.store.delete(self._epoch_key(old))
        logger.info("checkpoint of epoch %d saved to %s", epoch, self.store.url)

    def latest(self) -> dict[str, Any] | None:
        epochs = self.epochs()
        return _get(self.store, self._epoch_key(epochs[-1])) if epochs else None

    def save_best(self, payload: dict[str, Any]) -> None:
        _put(self.store, self.best_key, payload)

    def best(self) -> dict[str, Any]:
        return _get(self.store, self.best_key)

    def drop_best(self) -> None:
        """Once the final model is saved, the best-so-far copy serves no resume any more."""
        self.store.delete(self.best_key)


def _put(store: Store, key: str, payload: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.pt"
        torch.save(payload, path)
        store.put_file(key, path)


def _get(store: Store, key: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payload.pt"
        store.get_file(key, path)
        # Our own files, but still data only: weights_only refuses anything that would run code.
        return torch.load(path, map_location="cpu", weights_only=True)
