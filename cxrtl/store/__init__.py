"""Where a run's artifacts live: a folder (the default) or an S3 bucket (MinIO), by URL.

``open_store(url)`` returns a :class:`Store`. URLs: ``s3://BUCKET[/PREFIX]`` (MinIO, connection
settings from ``MINIO_ENDPOINT``, ``MINIO_ACCESS_KEY``, ``MINIO_SECRET_KEY``, ``MINIO_SECURE``, ``MINIO_TIMEOUT_S``; see
:mod:`cxrtl.store.s3`),
``file:///PATH`` or a plain path. With no URL, ``CXRTL_STORE`` or ``~/.cache/cxrtl/store``.

Keys are ``/``-separated relative paths; :mod:`cxrtl.store.keys` builds every key the steps use and
documents the whole layout.
"""

from __future__ import annotations

import os
from pathlib import Path

from cxrtl.store.base import Store, StoreError, sha256_file
from cxrtl.store.local import LocalStore

__all__ = ["S3_SCHEME", "LocalStore", "Store", "StoreError", "default_store_url", "open_store", "sha256_file"]

S3_SCHEME = "s3://"  # a URL of a bucket (and a prefix in it), reached with the MINIO_* settings


def default_store_url() -> str:
    return os.environ.get("CXRTL_STORE") or str(Path.home() / ".cache" / "cxrtl" / "store")


def open_store(url: str | None = None) -> Store:
    url = url or default_store_url()
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        # Not echoed: the value holds credentials.
        raise StoreError("the store URL carries credentials: set MINIO_ACCESS_KEY and MINIO_SECRET_KEY instead")
    if url.startswith(S3_SCHEME):
        from cxrtl.store.s3 import S3Store

        return S3Store.from_url(url)
    if url.startswith("file://"):
        url = url.removeprefix("file://")
    elif "://" in url:
        raise StoreError(f"store URL {url!r}: use s3://BUCKET[/PREFIX], file:///PATH or a plain path")
    return LocalStore(Path(url))
