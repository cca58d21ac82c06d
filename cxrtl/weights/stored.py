"""Weight files in the store: put once, checked; resolved by source name wherever a step runs.

Per source, the store holds each file put (named by its sha256), a record of each (source, sha256,
file_name, stand_in, tensors (backbone tensors matched), filled_num_batches_tracked, format,
published_sha256, published_md5, sha256_check, stored_at, verified_at, verified) and ``current.json``
(``{"sha256": ..., "updated_at": ...}``): the file train steps get. The keys are in :mod:`cxrtl.store.keys`.

``sha256_check`` says how the file relates to the registry: ``match`` (the published sha256 or md5),
``not-published`` (the publisher gives none), ``mismatch-allowed`` (stored with the explicit
override) or ``stand-in``.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cxrtl.errors import CxrtlError
from cxrtl.store import Store, StoreError, keys
from cxrtl.store.base import sha256_file
from cxrtl.weights.registry import SOURCE_NAMES, get_source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredWeights:
    source: str
    sha256: str
    stand_in: bool
    path: Path  # a local copy of the file
    key: str  # where it is in the store
    tensors: int  # backbone tensors the adapter matched when it was put


@dataclass(frozen=True)
class WeightStatus:
    """One row of ``cxrtl weights list``."""

    source: str
    origin: str
    stored: bool
    sha256: str | None
    stand_in: bool
    sha256_check: str | None
    verified: bool | None
    verified_at: str | None


@dataclass(frozen=True)
class VerifyResult:
    source: str
    sha256: str
    ok: bool
    detail: str


def put_weights(
    store: Store,
    source: str,
    file: Path | str,
    *,
    stand_in: bool = False,
    allow_sha_mismatch: bool = False,
    allow_same_file: bool = False,
) -> StoredWeights:
    """Check ``file`` with ``source``'s adapter, store it and make it the source's current file.

    A file already stored for another source is refused unless ``allow_same_file``: two sources are two
    pretrainings, so one file under two names is a mix-up, and the report would compare a model with itself.
    """
    # Imported here: reading the records (the pipeline's check before training) needs no torch.
    from cxrtl.weights.adapters import check_checkpoint

    weight_source = get_source(source)
    file = Path(file)
    check = check_checkpoint(source, file)
    digest = sha256_file(file)
    others = [
        other for other in SOURCE_NAMES if other != source and store.exists(keys.weights_record_key(other, digest))
    ]
    if others and not allow_same_file:
        raise CxrtlError(
            f"{file} (sha256 {digest}) is already stored as the weights of {', '.join(others)}; one file is not two "
            f"sources' pretraining: check the file, or pass --allow-same-file to store it as {source}'s too"
        )
    if others:
        logger.warning("%s: storing %s, already stored for %s (--allow-same-file)", source, file, ", ".join(others))
    matches = None if stand_in else weight_source.published_matches(file, digest)
    if stand_in:
        sha256_check = "stand-in"
    elif matches is None:
        sha256_check = "not-published"
        logger.info("%s: no published checksum; recording sha256 %s", source, digest)
    elif matches:
        sha256_check = "match"
    elif allow_sha_mismatch:
        sha256_check = "mismatch-allowed"
        logger.warning(
            "%s: %s (sha256 %s) does not have the published %s; storing it anyway (--allow-sha-mismatch)",
            source,
            file,
            digest,
            weight_source.published_checksum,
        )
    else:
        raise CxrtlError(
            f"{file} (sha256 {digest}) does not have the published {weight_source.published_checksum} of "
            f"{source}; check the download, or pass --allow-sha-mismatch to store it anyway"
        )

    key = keys.weights_key(source, digest)
    if not (store.exists(key) and store.sha256(key) == digest):
        stored_digest = store.put_file(key, file)
        if stored_digest != digest:
            raise StoreError(f"{file} changed while it was being stored (sha256 {digest} then {stored_digest})")
    now = _now()
    store.put_json(
        keys.weights_record_key(source, digest),
        {
            "source": source,
            "sha256": digest,
            "file_name": file.name,
            "stand_in": stand_in,
            "tensors": check.tensors,
            "filled_num_batches_tracked": len(check.filled),
            "format": weight_source.format.name,
            "published_sha256": weight_source.sha256,
            "published_md5": weight_source.md5,
            "sha256_check": sha256_check,
            "stored_at": now,
            "verified_at": now,
            "verified": True,
        },
    )
    # The pointer is written last, so it never names a file or record that is not there.
    store.put_json(keys.current_weights_key(source), {"sha256": digest, "updated_at": now})
    logger.info("stored %s%s as %s (%d backbone tensors)", source, " stand-in" if stand_in else "", key, check.tensors)
    return StoredWeights(source, digest, stand_in, file, key, check.tensors)


def current_record(store: Store, source: str) -> dict | None:
    """The record of ``source``'s current file, or None when nothing is stored for it."""
    get_source(source)
    if not store.exists(keys.current_weights_key(source)):
        return None
    sha256 = store.get_json(keys.current_weights_key(source))["sha256"]
    return store.get_json(keys.weights_record_key(source, sha256))


def resolve_weights(store: Store, source: str, cache_dir: Path | str) -> StoredWeights:
    """A local copy of ``source``'s current file, fetched into ``cache_dir`` unless already there."""
    record = current_record(store, source)
    if record is None:
        raise CxrtlError(
            f"no weights stored for {source} in {store.url}: run `cxrtl weights fetch {source}` or "
            f"`cxrtl weights put {source} FILE` (for a demo: `cxrtl weights stand-in {source} OUT` "
            f"then `cxrtl weights put {source} OUT --stand-in`)"
        )
    sha256 = record["sha256"]
    key = keys.weights_key(source, sha256)
    path = Path(cache_dir) / source / f"{sha256}.pth"
    if path.is_file() and sha256_file(path) == sha256:
        logger.info("%s: using the cached %s", source, path)
    else:
        fetched = store.get_file(key, path)
        if fetched != sha256:
            path.unlink(missing_ok=True)
            raise StoreError(f"{store.url}: {key} has sha256 {fetched}, not the {sha256} its name says")
    logger.info(
        "%s: weights %s%s (%s)", source, sha256, " [stand-in]" if record["stand_in"] else "", record["file_name"]
    )
    return StoredWeights(source, sha256, record["stand_in"], path, key, record["tensors"])


def missing_weights(store: Store, sources: list[str]) -> list[str]:
    """The sources, of ``sources``, whose current file is not in the store or failed its last verification."""
    missing = []
    for source in sources:
        record = current_record(store, source)
        if record is None or not record["verified"]:
            missing.append(source)
    return missing


def weights_commands(store_url: str, sources: list[str]) -> list[str]:
    """The `cxrtl weights` commands that put ``sources``' files into the store at ``store_url``."""
    downloadable = [s for s in sources if get_source(s).url]
    commands = [f"cxrtl weights fetch --store {store_url} {' '.join(downloadable)}"] if downloadable else []
    # A manual download is put from wherever the user saved it, under the name it is published as.
    commands += [
        f"cxrtl weights put --store {store_url} {s} {get_source(s).file_name}" for s in sources if not get_source(s).url
    ]
    return commands


def list_weights(store: Store) -> list[WeightStatus]:
    rows = []
    for source in SOURCE_NAMES:
        record = current_record(store, source)
        origin = get_source(source).origin
        if record is None:
            rows.append(WeightStatus(source, origin, False, None, False, None, None, None))
        else:
            rows.append(
                WeightStatus(
                    source,
                    origin,
                    True,
                    record["sha256"],
                    record["stand_in"],
                    record["sha256_check"],
                    record["verified"],
                    record["verified_at"],
                )
            )
    return rows


def verify_weights(store: Store) -> list[VerifyResult]:
    """Re-hash every stored weight file against its name, record and the registry; records an outcome that
    differs from the record's (``verified_at``: when it last changed)."""
    results = []
    for key in store.list(keys.weights_prefix()):
        parsed = keys.parse_weights_key(key)
        if parsed is None:
            continue
        source, sha256 = parsed
        ok, detail = _verify_one(store, key, source, sha256)
        results.append(VerifyResult(source, sha256, ok, detail))
        # Only a change is recorded (a file that stopped verifying stops training from it): checking good files
        # writes nothing, so a verify of a read-only store works.
        if store.exists(keys.weights_record_key(source, sha256)):
            record = store.get_json(keys.weights_record_key(source, sha256))
            if record["verified"] != ok:
                record.update(verified=ok, verified_at=_now())
                store.put_json(keys.weights_record_key(source, sha256), record)
        (logger.info if ok else logger.error)("%s %s: %s", source, sha256[:12], detail)
    return results


def _verify_one(store: Store, key: str, source: str, sha256: str) -> tuple[bool, str]:
    if source not in SOURCE_NAMES:
        return False, f"{key}: not a known weight source"
    if not store.exists(keys.weights_record_key(source, sha256)):
        return False, f"{key}: no record (not stored by `cxrtl weights put`)"
    with tempfile.TemporaryDirectory(prefix="cxrtl-verify-") as tmp:
        try:
            # get_file re-hashes the bytes against the sha256 stored with them, and returns that sha256.
            actual = store.get_file(key, Path(tmp) / "file")
        except StoreError as exc:
            return False, str(exc)
        if actual != sha256:
            return False, f"{key}: content has sha256 {actual}, not the one in its name"
        record = store.get_json(keys.weights_record_key(source, sha256))
        weight_source = get_source(source)
        if record["sha256_check"] == "match" and not weight_source.published_matches(Path(tmp) / "file", actual):
            return False, f"{key}: no longer the published {weight_source.published_checksum}"
    return True, f"sha256 ok ({record['sha256_check']})"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
