"""Fetching the published weight files into the store.

Downloads go to a private temporary folder, are checked (length, sha256, adapter) and only then put
in the store; whatever fails leaves nothing behind. ``CXRTL_WEIGHTS_MIRROR`` (or ``mirror=``) names a
mirror with the same file names, e.g. ``https://mirror.example/weights`` or ``file:///srv/weights`` on
an air-gapped cluster; with a mirror, the manual-download sources are fetched from it too.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxrtl.errors import CxrtlError
from cxrtl.files import atomic_file
from cxrtl.progress import Progress
from cxrtl.store import Store
from cxrtl.store.base import CHUNK
from cxrtl.weights.registry import SOURCE_NAMES, WeightSource, get_source
from cxrtl.weights.stored import StoredWeights, current_record, put_weights

logger = logging.getLogger(__name__)

MIRROR_ENV = "CXRTL_WEIGHTS_MIRROR"
_TIMEOUT_S = 60


@dataclass(frozen=True)
class FetchResult:
    source: str
    status: str  # "stored", "present", "manual" or "failed"
    detail: str
    stored: StoredWeights | None = None


def fetch_weights(
    store: Store,
    sources: Sequence[str] | None = None,
    *,
    mirror: str | None = None,
    work_dir: Path | None = None,
) -> list[FetchResult]:
    """Download each source that has a URL (all ten by default) into ``store``.

    A source already stored from its real file is left alone. A manual source (without a mirror)
    comes back as ``manual`` with where to get the file and the ``put`` command. A failed download
    comes back as ``failed`` with the reason; the others still run. ``work_dir`` holds the partial
    downloads (default: the system's temporary folder).
    """
    chosen = [get_source(name) for name in (sources or SOURCE_NAMES)]
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    return [_fetch_one(store, source, mirror, work_dir) for source in chosen]


def _fetch_one(store: Store, source: WeightSource, mirror: str | None, work_dir: Path | None) -> FetchResult:
    record = current_record(store, source.name)
    if record is not None and not record["stand_in"]:
        return FetchResult(source.name, "present", f"already stored ({record['sha256'][:12]}, {record['file_name']})")
    url = f"{mirror.rstrip('/')}/{source.file_name}" if mirror else source.url
    if url is None:
        return FetchResult(
            source.name,
            "manual",
            f"{source.manual_instructions}; then run: cxrtl weights put {source.name} PATH/{source.file_name}",
        )
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cxrtl-weights-", dir=work_dir) as tmp:
        try:
            path = download(url, Path(tmp) / source.file_name, label=source.name)
            stored = put_weights(store, source.name, path)
        except CxrtlError as exc:
            logger.error("%s: %s", source.name, exc)
            return FetchResult(source.name, "failed", str(exc))
    return FetchResult(source.name, "stored", f"stored {stored.sha256[:12]} from {redact(url)}", stored)


def download(url: str, dest: Path, *, label: str) -> Path:
    """``url`` to ``dest``, through a ``.part`` file that is removed unless the download completes."""
    dest = Path(dest)
    shown = redact(url)
    try:
        with atomic_file(dest) as part:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(part, "wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length else None
                logger.info("%s: downloading %s (%s)", label, shown, _mb(total) if total else "size unknown")
                received = 0
                with Progress(total, f"{label}: downloaded", logger, unit="B") as progress:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        progress.update(len(chunk))
            # http.client ends a chunked read at a closed connection without an error: count the bytes.
            if total is not None and received != total:
                raise CxrtlError(f"{shown}: download incomplete ({received} of {total} bytes); nothing was stored")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        # Only the reason: an exception's text can quote the URL, user:password included.
        if isinstance(exc, urllib.error.HTTPError):
            reason = f"HTTP {exc.code} {exc.reason}"
        else:
            reason = getattr(exc, "reason", None) or type(exc).__name__
        raise CxrtlError(f"{shown}: download failed ({reason}); nothing was stored") from None
    return dest


def redact(url: str) -> str:
    """``url`` without any user:password part, for logs and errors."""
    return re.sub(r"^(\w+://)[^/@]*@", r"\1", url)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
