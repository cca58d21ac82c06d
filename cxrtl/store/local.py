"""A folder as a store: the default for local runs."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from cxrtl.files import atomic_file, writing
from cxrtl.store.base import (
    Store,
    StoreError,
    check_sha256,
    normalize_key,
    recorded_sha256,
    sha256_file,
    source_file,
)

_SHA_SUFFIX = ".sha256"


class LocalStore(Store):
    """Objects are files under ``root``; each has a ``.sha256`` sidecar written after it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        if key.endswith(_SHA_SUFFIX):
            raise StoreError(f"invalid store key {key!r}: {_SHA_SUFFIX} names the checksum sidecars")
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

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.endswith(_SHA_SUFFIX) and not path.name.endswith(".part"):
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
