"""A folder as a store: the default for local runs."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from cxrtl.files import atomic_file, writing
from cxrtl.store.base import (
    Store,
    StoreError,
    Tagged,
    check_sha256,
    normalize_key,
    recorded_sha256,
    sha256_file,
    source_file,
)

_SHA_SUFFIX = ".sha256"
_LOCK_SUFFIX = ".lock"


class LocalStore(Store):
    """Objects are files under ``root``; each has a ``.sha256`` sidecar written after it.

    Compare-and-swap (:meth:`put_bytes_if`) holds an exclusive ``flock`` on the key's ``.lock`` file while it
    compares and renames, and :meth:`read_tagged` a shared one, so a reader never sees an object without its
    sidecar. ``flock`` serialises processes on one machine, and on network file systems that pass it on (NFS v4).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        for suffix, what in ((_SHA_SUFFIX, "the checksum sidecars"), (_LOCK_SUFFIX, "the lock files")):
            if key.endswith(suffix):
                raise StoreError(f"invalid store key {key!r}: {suffix} names {what}")
        return self.root.joinpath(*normalize_key(key).split("/"))

    def _write_atomically(
        self, key: str, fill: Callable[[Path], object], check: Callable[[str], None] | None = None
    ) -> str:
        """Fill a temporary file, hash it, ``check`` the hash, and only then put it under ``key``."""
        target = self._path(key)
        with writing(f"store object {key}", target):
            with atomic_file(target) as tmp:
                fill(tmp)
                digest = sha256_file(tmp)
                if check:
                    check(digest)
            # The sidecar too is replaced whole: a reader never sees an empty or half-written checksum.
            with atomic_file(Path(str(target) + _SHA_SUFFIX)) as tmp:
                tmp.write_text(f"{digest}\n")
        return digest

    def put_file(self, key: str, path: Path, link: bool = False) -> str:
        source = source_file(path)
        return self._write_atomically(key, lambda tmp: (_link_or_copy if link else shutil.copyfile)(source, tmp))

    def copy(self, key: str, to: str) -> str:
        # A store object is only ever replaced whole (a new file renamed over it), never changed in
        # place, so two keys may share one file.
        source = self._existing(key)
        return self._write_atomically(to, lambda tmp: _link_or_copy(source, tmp), lambda d: self._verify(key, d))

    def put_bytes(self, key: str, data: bytes) -> str:
        return self._write_atomically(key, lambda tmp: tmp.write_bytes(data))

    def get_file(self, key: str, path: Path) -> str:
        source = self._existing(key)
        with atomic_file(Path(path)) as tmp:
            shutil.copyfile(source, tmp)
            digest = sha256_file(tmp)
            self._verify(key, digest)
        return digest

    def get_bytes(self, key: str) -> bytes:
        data = self._existing(key).read_bytes()
        self._verify(key, hashlib.sha256(data).hexdigest())
        return data

    def read_tagged(self, key: str) -> Tagged | None:
        with self._locked(key, fcntl.LOCK_SH):
            if not self.exists(key):
                return None
            data = self.get_bytes(key)
        return Tagged(data, hashlib.sha256(data).hexdigest())

    def put_bytes_if(self, key: str, data: bytes, tag: str | None) -> bool:
        with self._locked(key, fcntl.LOCK_EX):
            path = self._path(key)
            current = sha256_file(path) if path.is_file() else None
            if current != tag:
                return False
            self.put_bytes(key, data)
        return True

    def check_conditional_writes(self) -> None:
        pass  # the lock always holds

    @contextlib.contextmanager
    def _locked(self, key: str, mode: int) -> Iterator[None]:
        lock = Path(str(self._path(key)) + _LOCK_SUFFIX)
        if mode == fcntl.LOCK_SH:
            # A reader writes nothing (the store may be read-only). No lock file: no compare-and-swap has written
            # the key yet, and one that starts meanwhile may at worst fail this read's sha256 check, never mix.
            try:
                fd = os.open(lock, os.O_RDONLY)
            except FileNotFoundError:
                yield
                return
        else:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.endswith((_SHA_SUFFIX, _LOCK_SUFFIX, ".part")):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        Path(str(path) + _SHA_SUFFIX).unlink(missing_ok=True)

    def sha256(self, key: str) -> str:
        return recorded_sha256(self.url, key, self._recorded(key))

    def size(self, key: str) -> int:
        return self._existing(key).stat().st_size

    def _recorded(self, key: str) -> str:
        sidecar = Path(str(self._existing(key)) + _SHA_SUFFIX)
        return sidecar.read_text().strip() if sidecar.is_file() else ""

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise StoreError(f"{self.url}: no object {key}")
        return path

    def _verify(self, key: str, actual: str) -> None:
        check_sha256(self.url, key, self._recorded(key), actual)


def _link_or_copy(source: Path, tmp: Path) -> None:
    tmp.unlink()  # atomic_file made it; a link needs the name free
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or one without links
        shutil.copyfile(source, tmp)
