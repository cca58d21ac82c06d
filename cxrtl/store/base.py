"""The storage interface every backend implements, and the checks they share."""

from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtl.errors import CxrtlError

CHUNK = 1 << 20


class StoreError(CxrtlError):
    """A store operation failed (missing object, bad credentials, unreachable endpoint, checksum)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the store writes JSON: sorted keys, indented, so the same record gives the same bytes."""
    return json.dumps(obj, indent=2, sort_keys=True).encode()


def normalize_key(key: str) -> str:
    """``key`` as ``a/b/c``: no empty, ``.`` or ``..`` parts, so it cannot escape the store's root or prefix."""
    parts = [p for p in key.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise StoreError(f"invalid store key {key!r}")
    return "/".join(parts)


def recorded_sha256(url: str, key: str, recorded: str | None) -> str:
    """The sha256 recorded with ``key``; an object without one was not written by a store, so it is refused."""
    if not recorded:
        raise StoreError(f"{url}: {key} has no recorded sha256 (not written through cxrtl?); refusing it")
    return recorded


def check_sha256(url: str, key: str, recorded: str | None, actual: str) -> None:
    """Refuse an object whose content does not hash to the sha256 recorded when it was written."""
    expected = recorded_sha256(url, key, recorded)
    if actual != expected:
        raise StoreError(f"{url}: {key} fails its sha256 check (stored {expected[:12]}, read {actual[:12]})")


def source_file(path: Path) -> Path:
    """``path`` if it is a readable file, else a StoreError naming it (a missing upload source is bad input)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such file to upload")
    return path


@dataclass(frozen=True)
class Tagged:
    """An object's content, read in one piece with the tag of that very version (see :meth:`Store.put_bytes_if`)."""

    data: bytes
    tag: str  # opaque: a folder store's sha256 of the content, an S3 server's ETag


class Store(abc.ABC):
    """Objects addressed by key; each stored with its sha256, verified when read back."""

    url: str

    @abc.abstractmethod
    def put_file(self, key: str, path: Path, link: bool = False) -> str:
        """Upload ``path`` under ``key``; returns its sha256. All or nothing.

        ``link``: the caller promises never to change ``path`` in place, so that a store on the same file
        system may keep ``path`` itself under ``key`` (a hard link) instead of a second copy. Without the
        promise a store copies: an in-place change to either name would change both."""

    @abc.abstractmethod
    def get_file(self, key: str, path: Path) -> str:
        """Download ``key`` to ``path`` (atomically), verifying its sha256; returns it."""

    @abc.abstractmethod
    def copy(self, key: str, to: str) -> str:
        """Store ``key``'s object under ``to`` too, with its sha256, and return that sha256.

        No bytes pass through the caller: a folder store links the file (checking it first), S3 copies
        on the server; reads of ``to`` verify it as they verify any object."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str: ...

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    @abc.abstractmethod
    def sha256(self, key: str) -> str:
        """The sha256 recorded when ``key`` was written."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """``key``'s size in bytes."""

    @abc.abstractmethod
    def read_tagged(self, key: str) -> Tagged | None:
        """``key``'s content, sha256 verified, with the tag of that version; None when there is no ``key``."""

    @abc.abstractmethod
    def put_bytes_if(self, key: str, data: bytes, tag: str | None) -> bool:
        """Compare-and-swap: store ``data`` under ``key`` only if ``key`` still holds the version ``tag`` names
        (from :meth:`read_tagged`), or, with ``tag`` None, only if there is no ``key``. Returns False, having
        written nothing, when the condition does not hold: another writer got there first. Of two writers
        with the same ``tag`` at most one wins."""

    @abc.abstractmethod
    def check_conditional_writes(self) -> None:
        """Refuse, in one line, a store where :meth:`put_bytes_if` could let two writers win (checked at a run's
        start, before any training)."""

    @abc.abstractmethod
    def create(self) -> None:
        """Make the place objects go (folder, bucket) if it is missing."""

    def put_json(self, key: str, obj: Any) -> str:
        return self.put_bytes(key, json_bytes(obj))

    def get_json(self, key: str) -> Any:
        try:
            return json.loads(self.get_bytes(key))
        except ValueError as exc:
            raise StoreError(f"{self.url}: {key} is not JSON ({exc})") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
