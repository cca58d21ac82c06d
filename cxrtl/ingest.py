"""Fetch the raw dataset (from Kaggle, a downloaded zip, a zip in an S3 store or a folder), check its layout
and record what it is.

An ingested folder holds::

    COVID-19_Radiography_Dataset/<Class>/images/*.png   (and whatever else the release carries)
    ingest.json       the IngestResult: slug, version, sha256, per-class counts of readable images and of
                      unreadable ones, source kind, created_at
    MANIFEST.sha256   ``sha256sum`` lines for every dataset file, relative to the folder, sorted

With a store, the archive is cached by version (next to its ``ingest.json``; keys in :mod:`cxrtl.store.keys`),
so a later ingest of the same version is not downloaded again. The pipeline hands the dataset on by that key
(:func:`stored_reference`, :func:`fetch_ingested`): KFP's own object store receives a few hundred bytes per run
instead of the extracted dataset (~0.8 GB of the real release).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from cxrtl import artifacts
from cxrtl.errors import CxrtlError
from cxrtl.files import atomic_file, staged_folder
from cxrtl.store import S3_SCHEME, Store, keys
from cxrtl.store.base import sha256_file

logger = logging.getLogger(__name__)

SLUG = "tawsifurrahman/covid19-radiography-database"
# cxrtl.demo_data's synthetic images are recorded under their own name, so that no card or report calls them by
# the Kaggle dataset's: its README (in the dataset folder) starts with DEMO_FIRST_LINE.
DEMO_SLUG = "cxrtl-demo-data (synthetic, not chest X-rays)"
DEMO_README = "README.md.txt"
DEMO_FIRST_LINE = "Synthetic demo data in the layout of the Kaggle COVID-19 Radiography Database"
ARCHIVE_NAME = "covid19-radiography-database.zip"  # the name Kaggle serves the download under
DATASET_DIR = "COVID-19_Radiography_Dataset"
CLASSES = ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia")
REQUIRED_CLASSES = ("COVID", "Normal")  # the binary task needs these two
STORE_NAME = SLUG.rsplit("/", 1)[-1]  # the dataset's folder in the store
INGEST_FILE = "ingest.json"
MANIFEST_FILE = "MANIFEST.sha256"
ARCHIVE_KEY = "archive.zip"
_KEPT = (ARCHIVE_KEY, INGEST_FILE)  # what a store keeps of a dataset version, under keys.dataset_key
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: archives do not depend on when they were made


@dataclass(frozen=True)
class IngestLimits:
    """What an ingest accepts, so that a zip bomb or a runaway folder is refused before it fills the disk.

    The real release (version 5) is a 0.8 GB zip of about 42,000 files (images and masks), 0.8 GB unpacked:
    PNGs hardly compress. The defaults leave it ten times the room; ``cxrtl ingest --max-bytes`` etc. change them.
    """

    max_bytes: int = 10 * 2**30  # unpacked (or copied) bytes in all
    max_files: int = 500_000
    # Unpacked / packed size of one member, and of all members together; checked only past 1 MiB unpacked (a
    # small text file of repeated bytes deflates far better than this and is harmless). A zip bomb reaches
    # 1,000 and more, and may spread it over many members of 1 MiB each.
    max_ratio: float = 100.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_files", "max_ratio"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise CxrtlError(f"ingest limit {name} must be a positive number, got {value!r}")


_RATIO_FROM_BYTES = 2**20


@dataclass
class IngestResult:
    slug: str
    version: str  # Kaggle's version number, or "sha256:<12 hex>" for a zip or folder
    sha256: str  # of the archive; for a folder, of its manifest
    counts: dict[str, int]  # readable PNG images per class (PIL identifies and verifies them), all four classes
    unreadable: dict[str, int]  # PNG files per class that PIL cannot read; preprocess skips them
    source: str  # "kaggle", "zip", "store" (a zip at an s3:// URL) or "folder"
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        counts = ", ".join(f"{n} {name}" for name, n in self.counts.items())
        unreadable = sum(self.unreadable.values())
        skipped = f" ({unreadable} unreadable PNG files not counted)" if unreadable else ""
        return f"{self.slug} version {self.version} from {self.source}: {counts} readable images{skipped}"


def ingest(source: str, out: Path, store: Store | None = None, limits: IngestLimits | None = None) -> IngestResult:
    """Fetch ``source`` ("kaggle", a .zip, ``s3://BUCKET/KEY`` of a zip or a folder) into ``out``; all or nothing."""
    out = Path(out)
    limits = limits or IngestLimits()
    with staged_folder(out, marker=INGEST_FILE) as staged:
        scratch = staged.parent
        if source == "kaggle":
            result = _ingest_kaggle(staged, scratch, store, limits)
        elif source.startswith(S3_SCHEME):
            result = _ingest_stored_zip(source, staged, scratch, store, limits)
        else:
            path = Path(source).expanduser()
            if path.is_dir():
                result = _ingest_folder(path, staged, scratch, store, limits)
            elif path.is_file():
                result = _ingest_zip(path, path.name, "zip", staged, scratch, store, limits)
            else:
                raise CxrtlError(
                    f"ingest source {source}: no such file or folder "
                    "(give 'kaggle', a .zip, s3://BUCKET/KEY or a folder)"
                )
        (staged / INGEST_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    logger.info("ingested %s into %s", result.summary(), out)
    return result


# --- sources ----------------------------------------------------------------------------------------------


def _ingest_zip(
    archive: Path,
    label: str,
    kind: str,
    staged: Path,
    scratch: Path,
    store: Store | None,
    limits: IngestLimits,
    version: str = "",
) -> IngestResult:
    digest = sha256_file(archive)
    version = version or f"sha256:{digest[:12]}"
    extracted = scratch / "extracted"
    safe_extract(archive, extracted, label, limits)
    os.replace(find_dataset(extracted, label), staged / DATASET_DIR)
    _write_manifest(staged)
    result = _result(staged, version, digest, kind)
    if store is not None:
        _keep_in_store(store, result, lambda: archive)
    return result


def _ingest_folder(
    folder: Path, staged: Path, scratch: Path, store: Store | None, limits: IngestLimits
) -> IngestResult:
    _copy_folder(find_dataset(folder, str(folder)), staged / DATASET_DIR, limits)
    digest = hashlib.sha256(_write_manifest(staged).encode()).hexdigest()
    result = _result(staged, f"sha256:{digest[:12]}", digest, "folder")
    if store is not None:

        def archive() -> Path:
            # Zipped only when the store lacks it: the real dataset is close to a gigabyte.
            write_deterministic_zip(scratch / ARCHIVE_NAME, _folder_entries(staged))
            return scratch / ARCHIVE_NAME

        _keep_in_store(store, result, archive)
    return result


def _ingest_stored_zip(
    url: str, staged: Path, scratch: Path, store: Store | None, limits: IngestLimits
) -> IngestResult:
    """A zip put into an S3 store with `cxrtl store put`, so a cluster without Kaggle access can run.

    The download is checked against the sha256 recorded with the object. With ``store`` it is cached under
    ``datasets/`` like any other source (once per version), since the pipeline's later steps fetch it from the
    run's store, which need not be the bucket it was put in.
    """
    from cxrtl.store import open_store

    bucket, _, key = url.removeprefix(S3_SCHEME).partition("/")
    if not bucket or not key or key.endswith("/"):
        raise CxrtlError(f"ingest source {url}: give s3://BUCKET/KEY of a zip put there with `cxrtl store put`")
    source = open_store(f"s3://{bucket}")
    if not source.exists(key):
        raise CxrtlError(
            f"ingest source {url}: no such object; upload the zip with "
            f"`cxrtl store --store s3://{bucket} put {key} ZIP`"
        )
    archive = scratch / ARCHIVE_NAME
    source.get_file(key, archive)
    return _ingest_zip(archive, url, "store", staged, scratch, store, limits)


def _ingest_kaggle(staged: Path, scratch: Path, store: Store | None, limits: IngestLimits) -> IngestResult:
    if not kaggle_credentials_present():
        raise CxrtlError(
            "no Kaggle credentials found: set KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY, or put "
            "kaggle.json in ~/.kaggle), or pass a downloaded zip or folder as the source instead"
        )
    with _kaggle_api() as api:
        return _download_kaggle(api, staged, scratch, store, limits)


def _download_kaggle(api: Any, staged: Path, scratch: Path, store: Store | None, limits: IngestLimits) -> IngestResult:
    version = str(_kaggle_call("look up the current version of", lambda: _kaggle_version(api)))
    label = f"{SLUG} version {version}"
    archive = scratch / ARCHIVE_NAME
    stored = _stored_sha256(store, version) if store is not None else None
    if store is not None and stored is not None:
        logger.info("%s is already in %s; reusing it instead of downloading", label, store)
        store.get_file(_store_key(version, ARCHIVE_KEY), archive)
        result = _ingest_zip(archive, label, "kaggle", staged, scratch, None, limits, version)
        if result.sha256 != stored:
            raise CxrtlError(f"{store}: the cached archive of {label} does not match its ingest record")
        return result
    logger.info("downloading %s from Kaggle", label)
    download = scratch / "download"
    _kaggle_call("download", lambda: api.dataset_download_files(f"{SLUG}/{version}", path=str(download)))
    os.replace(download / ARCHIVE_NAME, archive)
    return _ingest_zip(archive, label, "kaggle", staged, scratch, store, limits, version)


def kaggle_credentials_present() -> bool:
    """Whether any credential the Kaggle client reads is there; checked without importing it.

    Importing ``kaggle`` authenticates at once (and creates its config folder), so this comes first.
    """
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    names = ("kaggle.json", "access_token", "access_token.txt", "credentials.json")
    return any((folder / name).is_file() for folder in _kaggle_config_folders() for name in names)


@contextlib.contextmanager
def _kaggle_api() -> Iterator[Any]:
    """An authenticated client. Importing ``kaggle`` creates its config folder (~/.config/kaggle) when none
    exists; with none there, the credentials are in the environment, and the import gets a temporary folder."""
    with contextlib.ExitStack() as stack:
        if not _kaggle_config_folders_exist():
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="cxrtl-kaggle-"))
            stack.enter_context(_environ("KAGGLE_CONFIG_DIR", folder))
        # The import itself authenticates, and prints to stdout.
        module = _kaggle_call("load the client for", lambda: importlib.import_module("kaggle.api.kaggle_api_extended"))
        api = module.KaggleApi()
        # authenticate() calls exit(1) when the credentials it finds are unusable.
        _kaggle_call("authenticate for", api.authenticate)
        yield api


def _kaggle_config_folders() -> list[Path]:
    """Where the Kaggle client looks for its configuration, in its order."""
    env, home = os.environ, Path.home()
    folders = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    return [*folders, home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]


def _kaggle_config_folders_exist() -> bool:
    return any(folder.is_dir() for folder in _kaggle_config_folders())


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _kaggle_version(api: Any) -> int:
    status = json.loads(api.dataset_status(SLUG, format="json(current_version_number)"))
    return int(status["current_version_number"])


def _kaggle_call(what: str, call: Callable[[], Any]) -> Any:
    # The client prints help and URLs to stdout, which is the CLI's; only the exception's type reaches
    # the message, as the client's texts can carry request details.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return call()
    except (Exception, SystemExit) as exc:
        raise CxrtlError(
            f"Kaggle API: could not {what} {SLUG} ({type(exc).__name__}); check the credentials and the "
            "network, or pass a downloaded zip or folder as the source"
        ) from None


# --- store ------------------------------------------------------------------------------------------------


def _store_key(version: str, name: str) -> str:
    return keys.dataset_key(STORE_NAME, version, name)


def _stored_sha256(store: Store, version: str) -> str | None:
    """The sha256 recorded for a complete cached copy of ``version``, or None."""
    record = _store_key(version, INGEST_FILE)
    if store.exists(record) and store.exists(_store_key(version, ARCHIVE_KEY)):
        return store.get_json(record)["sha256"]
    return None


def _keep_in_store(store: Store, result: IngestResult, archive: Callable[[], Path]) -> None:
    label = f"{SLUG} version {result.version}"
    stored = _stored_sha256(store, result.version)
    if stored == result.sha256:
        logger.info("%s is already in %s; not storing it again", label, store)
        return
    if stored is not None:
        logger.warning("%s holds a different archive for %s; replacing it", store, label)
    store.put_file(_store_key(result.version, ARCHIVE_KEY), archive())
    # The record goes last: its presence means the archive is complete.
    store.put_json(_store_key(result.version, INGEST_FILE), result.to_dict())
    logger.info("stored %s in %s", label, store)


def stored_reference(store: Store, result: IngestResult) -> artifacts.StoredFolder:
    """The archive ``ingest(..., store=store)`` kept, and its record: what the pipeline hands on by key."""
    prefix = _store_key(result.version, "")
    files = {name: {"sha256": store.sha256(prefix + name), "size": store.size(prefix + name)} for name in _KEPT}
    return artifacts.StoredFolder(prefix, files)


def fetch_ingested(store: Store, ref: artifacts.StoredFolder, dest: Path) -> Path:
    """The ingested folder (dataset and ``ingest.json``) that :func:`stored_reference` names, rebuilt under
    ``dest``; the archive must be the one ingest checked (sha256), and is unpacked as carefully as then."""
    kept = artifacts.fetch(store, ref, dest / "kept")
    label = f"{store.url}: {ref.prefix}{ARCHIVE_KEY}"
    safe_extract(kept / ARCHIVE_KEY, dest / "extracted", label)
    (kept / ARCHIVE_KEY).unlink()  # the real one is close to a gigabyte; it is unpacked now
    raw = dest / "raw"
    raw.mkdir()
    os.replace(find_dataset(dest / "extracted", label), raw / DATASET_DIR)
    os.replace(kept / INGEST_FILE, raw / INGEST_FILE)
    return raw


# --- layout, extraction, manifest -------------------------------------------------------------------------


def safe_extract(archive: Path, dest: Path, label: str, limits: IngestLimits | None = None) -> None:
    """Extract a zip, refusing absolute paths, ``..``, symlinks, anything that would land outside ``dest``
    and anything over ``limits``.

    The limits are checked on the sizes the archive declares; zipfile never unpacks more than a member
    declares (it stops there and fails its CRC check), so a lying header cannot get past them.
    """
    limits = limits or IngestLimits()
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            dest.mkdir(parents=True, exist_ok=True)
            root = dest.resolve()
            for info in members:
                _check_member(info, root, label, limits)
            _check_totals(label, len(members), sum(info.file_size for info in members), limits)
            _check_ratio(label, f"the archive, whose {len(members)} members unpack", members, limits)
            for info in members:
                zf.extract(info, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        # zlib.error: a damaged deflate stream; EOFError: one cut short.
        raise CxrtlError(f"{label}: not a readable zip file ({type(exc).__name__}: {exc})") from None
    except NotImplementedError as exc:  # a compression method zipfile does not have
        raise CxrtlError(f"{label}: cannot unpack the zip ({exc})") from None


def _check_totals(label: str, files: int, size: int, limits: IngestLimits) -> None:
    if files > limits.max_files:
        raise CxrtlError(f"{label}: {files} files, more than the limit of {limits.max_files} (--max-files)")
    if size > limits.max_bytes:
        raise CxrtlError(f"{label}: {size} bytes unpacked, more than the limit of {limits.max_bytes} (--max-bytes)")


def _copy_folder(source: Path, dest: Path, limits: IngestLimits) -> None:
    """Copy ``source`` to ``dest`` within ``limits``, never leaving ``source``: a symbolic link to a file
    inside it is copied as that file; a link to a folder (a loop, or a second copy), a link leading out of
    it, a broken link and anything but a file or folder (a FIFO would block the copy) are refused."""
    root = source.resolve()
    totals = {"files": 0, "bytes": 0}

    def check(folder: str, names: list[str]) -> list[str]:
        for name in names:
            path = Path(folder) / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    raise CxrtlError(f"{source}: refusing {path}, a symbolic link that leads out of the folder")
                if not target.is_file():
                    raise CxrtlError(f"{source}: refusing {path}, a symbolic link to a folder or nothing")
            elif not (path.is_file() or path.is_dir()):
                raise CxrtlError(f"{source}: refusing {path}, neither a file nor a folder")
            if path.is_file():
                totals["files"] += 1
                totals["bytes"] += path.stat().st_size
        _check_totals(str(source), totals["files"], totals["bytes"], limits)
        return []

    shutil.copytree(source, dest, ignore=check)


def _check_member(info: zipfile.ZipInfo, root: Path, label: str, limits: IngestLimits) -> None:
    name = info.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or (parts and parts[0].endswith(":")):
        raise CxrtlError(f"{label}: refusing the absolute path {info.filename!r} in the archive")
    if ".." in parts:
        raise CxrtlError(f"{label}: refusing the path {info.filename!r} in the archive (it climbs out with '..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise CxrtlError(f"{label}: refusing the symbolic link {info.filename!r} in the archive")
    if not (root / name).resolve().is_relative_to(root):
        raise CxrtlError(f"{label}: refusing {info.filename!r}, which would be written outside the target")
    _check_ratio(label, f"{info.filename!r}, which unpacks", [info], limits)


def _check_ratio(label: str, what: str, members: list[zipfile.ZipInfo], limits: IngestLimits) -> None:
    unpacked = sum(info.file_size for info in members)
    packed = max(sum(info.compress_size for info in members), 1)
    if unpacked > _RATIO_FROM_BYTES and unpacked > limits.max_ratio * packed:
        raise CxrtlError(
            f"{label}: refusing {what} {unpacked} bytes, {unpacked / packed:.0f} times what is packed "
            f"(limit {limits.max_ratio:g}, --max-ratio): a zip bomb?"
        )


def _dataset_root(folder: Path) -> Path | None:
    """The ``COVID-19_Radiography_Dataset`` folder: inside ``folder``, or ``folder`` itself."""
    if (folder / DATASET_DIR).is_dir():
        return folder / DATASET_DIR
    if any((folder / name).is_dir() for name in CLASSES):
        return folder
    return None


def find_dataset(folder: Path, label: str) -> Path:
    """The checked dataset folder of an ingested (or Kaggle-layout) folder; CxrtlError if it is not one."""
    root = _dataset_root(folder)
    if root is None:
        raise CxrtlError(_layout_error(label, f"no {DATASET_DIR}/{REQUIRED_CLASSES[0]}/images/ folder"))
    _check_layout(root, label)
    return root


def _check_layout(root: Path, label: str) -> None:
    for name in REQUIRED_CLASSES:
        images = root / name / "images"
        if not images.is_dir():
            raise CxrtlError(_layout_error(label, f"no {DATASET_DIR}/{name}/images/ folder"))
        if not list_images(images):
            raise CxrtlError(_layout_error(label, f"no PNG images in {DATASET_DIR}/{name}/images/"))


def _layout_error(label: str, problem: str) -> str:
    return f"{label}: {problem}; is this the Kaggle COVID-19 Radiography Database?"


def list_images(folder: Path) -> list[Path]:
    """The PNG files in ``folder``, in name order; none if it is missing."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())


def _result(staged: Path, version: str, digest: str, kind: str) -> IngestResult:
    root = staged / DATASET_DIR
    readable = {name: [_readable(p) for p in list_images(root / name / "images")] for name in CLASSES}
    readme = root / DEMO_README
    demo = readme.is_file() and readme.read_text(errors="replace").startswith(DEMO_FIRST_LINE)
    return IngestResult(
        slug=DEMO_SLUG if demo else SLUG,
        version=version,
        sha256=digest,
        counts={name: sum(readable[name]) for name in CLASSES},
        unreadable={name: len(readable[name]) - sum(readable[name]) for name in CLASSES},
        source=kind,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _readable(path: Path) -> bool:
    """Whether PIL identifies ``path`` and its chunks check out (verify() reads them without decoding)."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return False
    return True


def _write_manifest(folder: Path) -> str:
    """Write ``MANIFEST.sha256`` for the dataset under ``folder``; returns its text."""
    lines = [f"{sha256_file(folder / rel)}  {rel}\n" for rel in _dataset_files(folder)]
    text = "".join(lines)
    (folder / MANIFEST_FILE).write_text(text)
    return text


def _dataset_files(folder: Path) -> list[str]:
    """Relative posix paths of all files under ``folder/COVID-19_Radiography_Dataset``, sorted."""
    root = folder / DATASET_DIR
    return sorted(p.relative_to(folder).as_posix() for p in root.rglob("*") if p.is_file())


def _folder_entries(folder: Path) -> Iterator[tuple[str, bytes]]:
    for rel in _dataset_files(folder):
        yield rel, (folder / rel).read_bytes()


def write_deterministic_zip(target: Path, entries: Iterable[tuple[str, bytes]]) -> None:
    """Write a zip whose bytes depend only on the entries (fixed timestamps and modes), atomically.

    PNGs are stored as they are (deflating them again gains nothing); other files are deflated.
    """
    with atomic_file(target) as tmp, zipfile.ZipFile(tmp, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            png = name.lower().endswith(".png")
            info.compress_type = zipfile.ZIP_STORED if png else zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
