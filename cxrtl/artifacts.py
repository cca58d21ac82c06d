"""What the pipeline's steps hand each other by store key: a folder of files kept in our store, named in a
small JSON file (the KFP artifact), instead of the files themselves.

Kubeflow Pipelines copies every output artifact into its own object store, which every user of the cluster
shares and which it never cleans. A trained model (~95 MB) or a prepared dataset (~1 GB at 224 px) goes to
our store once; the artifact KFP keeps holds only its key, and each file's sha256 and size, so KFP's lineage
still shows what flowed where, and a step that fetches the files checks they are the ones handed on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cxrtl.errors import CxrtlError
from cxrtl.store import Store
from cxrtl.store.base import sha256_file

REF_FILE = "stored.json"  # in the artifact's folder: the reference


@dataclass(frozen=True)
class StoredFolder:
    """A folder's files under ``prefix`` in the store: name -> {"sha256", "size"}."""

    prefix: str  # ends in "/"
    files: dict[str, dict[str, Any]]

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files.values())

    @property
    def sha256(self) -> str:
        """One digest of every file's name and sha256: what KFP's metadata shows for the folder."""
        listing = "".join(f"{name}\0{f['sha256']}\n" for name, f in sorted(self.files.items()))
        return hashlib.sha256(listing.encode()).hexdigest()

    def metadata(self) -> dict[str, Any]:
        """For the KFP artifact's metadata: the key, the folder's digest, its size in bytes."""
        return {"store_key": self.prefix, "sha256": self.sha256, "size": self.size}

    def write(self, folder: Path) -> None:
        """Write the reference into the artifact's folder."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / REF_FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, folder: Path) -> StoredFolder:
        path = Path(folder) / REF_FILE
        try:
            record = json.loads(Path(path).read_text())
            return cls(prefix=record["prefix"], files=record["files"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CxrtlError(f"{path}: not a reference to files in the store ({type(exc).__name__})") from None


def describe(folder: Path, prefix: str) -> StoredFolder:
    """The reference to ``folder``'s files (not in sub-folders) as put under ``prefix``."""
    files = {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(Path(folder).iterdir())
        if p.is_file()
    }
    return StoredFolder(prefix, files)


def publish(store: Store, folder: Path, prefix: str) -> StoredFolder:
    """Put ``folder``'s files under ``prefix`` (linked where the store can: the caller never changes them)."""
    ref = describe(folder, prefix)
    for name in ref.files:
        store.put_file(prefix + name, Path(folder) / name, link=True)
    return ref


def fetch(store: Store, ref: StoredFolder, dest: Path) -> Path:
    """The referenced files, downloaded into ``dest``; each must be the file that was handed on."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, expected in ref.files.items():
        key = ref.prefix + name
        if not store.exists(key):
            raise CxrtlError(f"{store.url}: {key} is gone; was it pruned while the run needed it?")
        if store.get_file(key, dest / name) != expected["sha256"]:
            raise CxrtlError(f"{store.url}: {key} is not the file this step was handed (sha256 differs)")
    return dest
