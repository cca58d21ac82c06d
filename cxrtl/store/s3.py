"""An S3 bucket (MinIO) as a store, through the ``minio`` SDK.

Connection settings come from the environment (in the cluster, from a Kubernetes Secret):

``MINIO_ENDPOINT``
    ``HOST:PORT``, or ``http://HOST:PORT`` / ``https://HOST:PORT`` (the scheme then decides TLS).
``MINIO_ACCESS_KEY``, ``MINIO_SECRET_KEY``
    The key pair. Neither value ever appears in a log line, an error or a ``repr``.
``MINIO_SECURE``
    ``true`` or ``false`` (default ``false``: the in-cluster MinIO service speaks plain HTTP).
``MINIO_TIMEOUT_S``
    The most seconds one request to the server may take, connecting, waiting for answers and retrying
    together (default 30). A server that accepts connections but never answers, or that answers a byte at a
    time, fails within it, with one line naming the endpoint: each attempt has a deadline for all of it,
    headers and body, not only for each read. A large body adds its size at 256 KiB/s to the deadline.

Each object carries its sha256 as user metadata (``x-amz-meta-sha256``); reads refuse an object
whose content does not match it, or that has none. A single PUT is atomic; a multipart upload
(files over ``part_size``) is aborted on any failure, Ctrl-C included (through
:mod:`cxrtl.store.minio_adapter`), so no object and no parts are left behind.

Compare-and-swap (:meth:`S3Store.put_bytes_if`, what moves the champion pointer) is a PutObject with
``If-Match: ETAG`` or ``If-None-Match: *``: AWS S3 and MinIO refuse it with 412 when the object changed.
A server that ignores the headers would let two writers both win, so before its first conditional write a
store checks, on a probe object of its own, that the server refuses a write whose condition fails, and
refuses to go on, in one line, where it does not (s3rver, the test server, ignores them).
Buckets are never created implicitly: a typo in a bucket name must not scatter artifacts into a
new bucket. ``create()`` (``cxrtl store mb``) makes one on purpose.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import urllib3
from minio.commonconfig import CopySource
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import MIN_PART_SIZE, check_bucket_name
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import Retry, Timeout

from cxrtl.files import atomic_file
from cxrtl.progress import Progress
from cxrtl.store import keys
from cxrtl.store.base import (
    CHUNK,
    Store,
    StoreError,
    Tagged,
    check_sha256,
    normalize_key,
    recorded_sha256,
    sha256_file,
    source_file,
)
from cxrtl.store.minio_adapter import Client, response_status

logger = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 16 << 20
# Connection errors, timeouts and 5xx answers are retried this many times, with exponential back-off
# (0 s, 0.5 s, 1 s), so a down endpoint fails within a few seconds.
RETRIES = 3
BACKOFF_S = 0.25
_BACKOFF_TOTAL_S = sum(BACKOFF_S * 2**n for n in range(1, RETRIES))  # urllib3 waits 0 before the first retry
# Well under a minute, yet room for a busy server: each of the 4 attempts gets 2 s to connect and 5.1 s to answer.
DEFAULT_TIMEOUT_S = 30.0
_MIN_TIMEOUT_S = 4.0
_CONNECT_S = 2.0
_METADATA_KEY = "sha256"
_METADATA_HEADER = f"x-amz-meta-{_METADATA_KEY}"
_ACCESS_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "ResourceNotFound"})
# A conditional write that did not hold: 412, or AWS's 409 when another conditional write to the key was in flight.
_CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NO_SUCH_ETAG = '"00000000000000000000000000000000"'
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_PROGRESS_FROM_BYTES = 64 * 2**20


# A body of N bytes adds N / this many seconds to an attempt's deadline: a slow link still moves a checkpoint.
_MIN_BYTES_PER_S = 256 * 1024


class _Deadline:
    """Each request on a connection is cut off (its socket shut down) once its deadline has passed, answer and
    body included; a server that drips a byte at a time never outlasts it. ``expired`` tells errors why."""

    def __init__(self, attempt_s: float) -> None:
        self.attempt_s = attempt_s
        self.expired = threading.Event()

    def connection_class(self, base: type[HTTPConnection]) -> type[HTTPConnection]:
        deadline = self

        class Connection(base):  # type: ignore[misc, valid-type]
            _timer: threading.Timer | None = None
            _started = 0.0

            def request(self, method, url, body=None, headers=None, **kwargs):
                self._arm(deadline.attempt_s + _length(headers) / _MIN_BYTES_PER_S)
                return super().request(method, url, body=body, headers=headers, **kwargs)

            def getresponse(self, *args, **kwargs):
                response = super().getresponse(*args, **kwargs)
                spent = time.monotonic() - self._started
                self._arm(deadline.attempt_s - spent + _length(response.headers) / _MIN_BYTES_PER_S, restart=False)
                return response

            def close(self) -> None:
                if self._timer is not None:
                    self._timer.cancel()
                super().close()

            def _arm(self, seconds: float, restart: bool = True) -> None:
                if self._timer is not None:
                    self._timer.cancel()
                if restart:
                    self._started = time.monotonic()
                self._timer = threading.Timer(max(seconds, 0.0), self._expire)
                self._timer.daemon = True
                self._timer.start()

            def _expire(self) -> None:
                deadline.expired.set()
                with contextlib.suppress(OSError, AttributeError):
                    self.sock.shutdown(socket.SHUT_RDWR)

        return Connection

    def pool_classes(self) -> dict[str, type[HTTPConnectionPool]]:
        plain = type("Pool", (HTTPConnectionPool,), {"ConnectionCls": self.connection_class(HTTPConnection)})
        tls = type("TlsPool", (HTTPSConnectionPool,), {"ConnectionCls": self.connection_class(HTTPSConnection)})
        return {"http": plain, "https": tls}


def _length(headers: Mapping[str, str] | None) -> int:
    text = (headers or {}).get("Content-Length") or "0"
    return int(text) if text.isdigit() else 0


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """Where the S3 server is and the key pair to sign requests with."""

    endpoint: str  # HOST[:PORT], as errors name it
    secure: bool
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S  # a whole request: connecting, answers and retries

    def __post_init__(self) -> None:
        if not _MIN_TIMEOUT_S <= self.timeout_s < float("inf"):
            raise StoreError(
                f"MINIO_TIMEOUT_S={self.timeout_s!r}: give a number of seconds of at least {_MIN_TIMEOUT_S:g}"
            )

    @property
    def attempt_s(self) -> float:
        """Each attempt's share of ``timeout_s``: all attempts and the back-off between them fit in it."""
        return (self.timeout_s - _BACKOFF_TOTAL_S) / (RETRIES + 1)

    def timeouts(self) -> Timeout:
        connect = min(_CONNECT_S, self.attempt_s / 3)
        return Timeout(connect=connect, read=self.attempt_s - connect)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise StoreError(
                    f"{name} is not set: an s3:// store needs MINIO_ENDPOINT, MINIO_ACCESS_KEY and MINIO_SECRET_KEY"
                )
            return value

        endpoint = required("MINIO_ENDPOINT")
        access_key = required("MINIO_ACCESS_KEY")
        secret_key = required("MINIO_SECRET_KEY")
        secure_text = env.get("MINIO_SECURE", "").strip().lower()
        if secure_text and secure_text not in _TRUE | _FALSE:
            raise StoreError(f"MINIO_SECURE={secure_text!r}: use true or false")
        secure = secure_text in _TRUE if secure_text else None

        if "://" in endpoint:
            parts = urlsplit(endpoint)
            if parts.username or parts.password:
                # Not echoed: the value holds credentials.
                raise StoreError(
                    "MINIO_ENDPOINT carries credentials: put them in MINIO_ACCESS_KEY and MINIO_SECRET_KEY"
                )
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
                raise StoreError(f"MINIO_ENDPOINT={endpoint!r}: use HOST:PORT or http(s)://HOST:PORT")
            if secure is not None and secure != (parts.scheme == "https"):
                raise StoreError(f"MINIO_ENDPOINT={endpoint!r} contradicts MINIO_SECURE={secure_text!r}")
            endpoint, secure = parts.netloc, parts.scheme == "https"
        elif "@" in endpoint:
            raise StoreError("MINIO_ENDPOINT carries credentials: put them in MINIO_ACCESS_KEY and MINIO_SECRET_KEY")
        elif "/" in endpoint:
            raise StoreError(f"MINIO_ENDPOINT={endpoint!r}: use HOST:PORT or http(s)://HOST:PORT")
        timeout_text = env.get("MINIO_TIMEOUT_S", "").strip()
        try:
            timeout_s = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT_S
        except ValueError:
            raise StoreError(f"MINIO_TIMEOUT_S={timeout_text!r}: give a number of seconds") from None
        return cls(
            endpoint=endpoint, secure=bool(secure), access_key=access_key, secret_key=secret_key, timeout_s=timeout_s
        )


def parse_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET[/PREFIX]`` -> (bucket, prefix without slashes at either end)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise StoreError(f"store URL {url!r}: use s3://BUCKET[/PREFIX]")
    try:
        check_bucket_name(parts.netloc, strict=True)
    except ValueError:
        raise StoreError(f"store URL {url!r}: {parts.netloc!r} is not a valid bucket name") from None
    prefix = parts.path.strip("/")
    return parts.netloc, normalize_key(prefix) if prefix else ""


class S3Store(Store):
    """Objects in ``bucket``, every key under ``prefix``; see the module doc for the settings."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        settings: S3Settings | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size {part_size}: S3 parts are at least {MIN_PART_SIZE} bytes")
        self.settings = settings or S3Settings.from_env()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._bucket_checked = False
        self._conditions_checked = False
        self._deadline = _Deadline(self.settings.attempt_s)
        # A custom pool so that retries are bounded and quick; minio's default waits minutes (5 min per read).
        http = urllib3.PoolManager(
            timeout=self.settings.timeouts(),
            maxsize=4,
            cert_reqs="CERT_REQUIRED",
            retries=Retry(
                total=RETRIES,
                backoff_factor=BACKOFF_S,
                status_forcelist=(500, 502, 503, 504),
                # A Retry-After header could make a retry wait longer than the whole limit.
                respect_retry_after_header=False,
            ),
        )
        http.pool_classes_by_scheme = self._deadline.pool_classes()
        self._client = Client(
            self.settings.endpoint,
            access_key=self.settings.access_key,
            secret_key=self.settings.secret_key,
            secure=self.settings.secure,
            http_client=http,
        )

    @classmethod
    def from_url(cls, url: str, **kwargs) -> S3Store:
        bucket, prefix = parse_url(url)
        return cls(bucket, prefix, **kwargs)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r} at {self.settings.endpoint})"

    # -- writing -----------------------------------------------------------------------------------

    def put_file(self, key: str, path: Path, link: bool = False) -> str:
        path = source_file(path)
        digest = sha256_file(path)
        size = path.stat().st_size
        with open(path, "rb") as f, _progress(size, f"uploading {key}") as progress:
            self._put(key, f, size, digest, progress)
        return digest

    def copy(self, key: str, to: str) -> str:
        self._check_bucket()
        with self._errors(key):
            # The sha256 metadata travels with the bytes (the default metadata directive, COPY).
            self._client.copy_object(self.bucket, self._object(to), CopySource(self.bucket, self._object(key)))
        logger.info("copied %s to %s in %s", key, to, self.url)
        return self.sha256(to)

    def put_bytes(self, key: str, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._put(key, io.BytesIO(data), len(data), digest)
        return digest

    def _put(self, key: str, stream: BinaryIO, length: int, digest: str, progress: Progress | None = None) -> None:
        """Upload ``length`` bytes of ``stream`` (whose sha256 is ``digest``) as ``key``, all or nothing."""
        name = self._object(key)
        self._check_bucket()
        self._client.take_upload_in_progress()
        try:
            with self._errors(key):
                self._client.put_object(
                    self.bucket,
                    name,
                    _SourceReader(stream, key, progress),
                    length,
                    metadata={_METADATA_KEY: digest},
                    part_size=self.part_size,
                    # One part at a time: on failure minio aborts with no part still in flight,
                    # which could otherwise land after the abort and linger.
                    num_parallel_uploads=1,
                )
        except Exception:
            raise  # minio has already aborted the multipart upload
        except BaseException:
            self._abort_interrupted_upload()
            raise
        logger.info("stored %s in %s (%d bytes, sha256 %s)", key, self.url, length, digest[:12])

    def put_bytes_if(self, key: str, data: bytes, tag: str | None) -> bool:
        self.check_conditional_writes()
        return self._put_if(key, data, tag)

    def _put_if(self, key: str, data: bytes, tag: str | None) -> bool:
        digest = hashlib.sha256(data).hexdigest()
        condition = {"If-Match": tag} if tag is not None else {"If-None-Match": "*"}
        headers = {"Content-Type": "application/octet-stream", _METADATA_HEADER: digest, **condition}
        self._check_bucket()
        with self._errors(key):
            try:
                self._client.put_conditionally(self.bucket, self._object(key), data, headers)
            except S3Error as exc:
                # If-Match on a key that is gone: AWS answers 404, which is a lost race too.
                if exc.code in _CONDITION_CODES or (tag is not None and exc.code in _MISSING_CODES):
                    logger.info("conditional write of %s in %s refused (%s)", key, self.url, exc.code)
                    return False
                raise
        logger.info("stored %s in %s (%d bytes, sha256 %s, conditionally)", key, self.url, len(data), digest[:12])
        return True

    def check_conditional_writes(self) -> None:
        """Refuse a server that ignores If-Match / If-None-Match on PUT (once per store), tried on a probe object
        of this store's own, so that two stores probing at once do not disturb each other."""
        if self._conditions_checked:
            return
        probe = keys.conditional_write_probe_key(secrets.token_hex(8))
        self.put_bytes(probe, b"probe")
        try:
            ignored = [
                header
                for header, tag in (("If-None-Match: *", None), ("If-Match", _NO_SUCH_ETAG))
                if self._put_if(probe, b"probe", tag)
            ]
        finally:
            self.delete(probe)
        if ignored:
            raise StoreError(
                f"the S3 server at {self.settings.endpoint} ignores conditional writes ({' and '.join(ignored)} on "
                "PUT), which the champion pointer needs so that two promotions cannot both win: use MinIO or AWS S3"
            )
        self._conditions_checked = True

    def _abort_interrupted_upload(self) -> None:
        upload = self._client.take_upload_in_progress()
        if upload is None:
            return
        try:
            self._client.abort_upload(upload)
        except (S3Error, urllib3.exceptions.HTTPError) as exc:
            # It may have completed just before the interrupt; otherwise the server's stale-upload
            # clean-up reclaims the parts. Either way no partial object is visible.
            logger.warning(
                "could not abort the interrupted upload of %s in %s: %s", upload[1], self.url, type(exc).__name__
            )

    def delete(self, key: str) -> None:
        name = self._object(key)
        self._check_bucket()
        with self._errors(key):
            self._client.remove_object(self.bucket, name)

    def create(self) -> None:
        with self._errors():
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)
                logger.info("created bucket %s at %s", self.bucket, self.settings.endpoint)
        self._bucket_checked = True

    # -- reading -----------------------------------------------------------------------------------

    def get_file(self, key: str, path: Path) -> str:
        name = self._object(key)
        self._check_bucket()
        path = Path(path)
        with atomic_file(path) as part, open(part, "wb") as f, self._errors(key), self._response(name) as response:
            digest = hashlib.sha256()
            length = response.headers.get("Content-Length")
            with _progress(int(length) if length else None, f"downloading {key}") as progress:
                for chunk in response.stream(CHUNK):
                    digest.update(chunk)
                    f.write(chunk)
                    progress.update(len(chunk))
            check_sha256(self.url, key, response.headers.get(_METADATA_HEADER), digest.hexdigest())
        logger.info("fetched %s from %s to %s", key, self.url, path)
        return digest.hexdigest()

    def get_bytes(self, key: str) -> bytes:
        name = self._object(key)
        self._check_bucket()
        with self._errors(key), self._response(name) as response:
            data = response.read()
            check_sha256(self.url, key, response.headers.get(_METADATA_HEADER), hashlib.sha256(data).hexdigest())
        return data

    def read_tagged(self, key: str) -> Tagged | None:
        name = self._object(key)
        self._check_bucket()
        with self._errors(key):
            try:
                response = self._client.get_object(self.bucket, name)
            except S3Error as exc:
                if exc.code in _MISSING_CODES:
                    return None
                raise
            try:
                data = response.read()
                etag, recorded = response.headers.get("ETag"), response.headers.get(_METADATA_HEADER)
            finally:
                response.close()
                response.release_conn()
        check_sha256(self.url, key, recorded, hashlib.sha256(data).hexdigest())
        if not etag:
            raise StoreError(f"{self.settings.endpoint} sent {self.url}/{key} without an ETag")
        return Tagged(data, etag)

    def list(self, prefix: str = "") -> list[str]:
        self._check_bucket()
        root = f"{self.prefix}/" if self.prefix else ""
        with self._errors():
            names = [
                obj.object_name
                for obj in self._client.list_objects(self.bucket, prefix=root + prefix, recursive=True)
                if obj.object_name and not obj.is_dir
            ]
        return sorted(name.removeprefix(root) for name in names)

    def exists(self, key: str) -> bool:
        try:
            self._stat(key)
        except _Missing:
            return False
        return True

    def sha256(self, key: str) -> str:
        return recorded_sha256(self.url, key, (self._existing(key).metadata or {}).get(_METADATA_HEADER))

    def size(self, key: str) -> int:
        return self._existing(key).size

    # -- helpers -----------------------------------------------------------------------------------

    def _object(self, key: str) -> str:
        key = normalize_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _stat(self, key: str):
        name = self._object(key)
        self._check_bucket()
        with self._errors(key):
            try:
                return self._client.stat_object(self.bucket, name)
            except S3Error as exc:
                if exc.code in _MISSING_CODES:
                    raise _Missing from None
                raise

    def _existing(self, key: str):
        try:
            return self._stat(key)
        except _Missing:
            raise StoreError(f"{self.url}: no object {key}") from None

    @contextlib.contextmanager
    def _response(self, name: str) -> Iterator[urllib3.BaseHTTPResponse]:
        response = self._client.get_object(self.bucket, name)
        try:
            yield response
        finally:
            response.close()
            response.release_conn()

    def _check_bucket(self) -> None:
        """Fail early, and clearly, on a missing bucket or bad credentials (once per store)."""
        if self._bucket_checked:
            return
        with self._errors():
            found = self._client.bucket_exists(self.bucket)
        if not found:
            raise StoreError(self._no_bucket_message())
        self._bucket_checked = True

    def _no_bucket_message(self) -> str:
        return (
            f"bucket {self.bucket!r} does not exist at {self.settings.endpoint}: create it with "
            f"`cxrtl store --store s3://{self.bucket} mb` (or `mc mb ALIAS/{self.bucket}`)"
        )

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Turn the SDK's and urllib3's exceptions into one-line StoreErrors.

        The originals are kept only as ``__context__`` (hidden from tracebacks); their text holds
        request details but never the secret, which only ever feeds the signature.
        """
        endpoint = self.settings.endpoint
        self._deadline.expired.clear()
        try:
            yield
        except S3Error as exc:
            if exc.code in _ACCESS_CODES:
                message = f"access denied by {endpoint} ({exc.code}): check MINIO_ACCESS_KEY and MINIO_SECRET_KEY"
            elif exc.code == "NoSuchBucket":
                message = self._no_bucket_message()
            elif exc.code in _MISSING_CODES and key is not None:
                message = f"{self.url}: no object {key}"
            else:
                target = f"{self.url}/{key}" if key else self.url
                message = f"{endpoint} refused an operation on {target}: {exc.code}: {exc.message}"
            raise StoreError(message) from None
        except (InvalidResponseError, ServerError) as exc:
            raise StoreError(
                f"{endpoint} did not answer as an S3 server (HTTP {response_status(exc)}): check MINIO_ENDPOINT"
            ) from None
        except urllib3.exceptions.MaxRetryError as exc:
            timed_out = _timed_out(exc.reason) or self._deadline.expired.is_set()
            limit = f" within MINIO_TIMEOUT_S={self.settings.timeout_s:g} s" if timed_out else ""
            raise StoreError(
                f"cannot reach S3 endpoint {endpoint} after {RETRIES + 1} attempts ({_reason(exc.reason)}{limit}): "
                "check MINIO_ENDPOINT and that the server is up"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            target = f"{self.url}/{key}" if key else self.url
            if self._deadline.expired.is_set():
                raise StoreError(
                    f"{endpoint} did not complete an operation on {target} within MINIO_TIMEOUT_S="
                    f"{self.settings.timeout_s:g} s (an answer too slow to wait for)"
                ) from None
            raise StoreError(
                f"connection to {endpoint} broke during an operation on {target} ({_reason(exc)})"
            ) from None


class _Missing(Exception):
    """The object is not there (used to tell exists() from real errors)."""


class _SourceReader:
    """What minio reads the upload from: a failing read becomes a StoreError naming the key."""

    def __init__(self, stream: BinaryIO, key: str, progress: Progress | None = None) -> None:
        self._stream = stream
        self._key = key
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except OSError as exc:
            raise StoreError(f"reading the data for {self._key} failed: {exc}") from None
        if self._progress is not None:
            self._progress.update(len(data))
        return data


def _progress(size: int | None, label: str) -> Progress:
    # Only transfers that take a few seconds: checkpoints, models, datasets; not the JSON beside them.
    return Progress(size, label, logger, unit="B", shown_from=_PROGRESS_FROM_BYTES)


def _timed_out(exc: BaseException | None) -> bool:
    # urllib3 makes a refused connection (NewConnectionError) a ConnectTimeoutError too, for compatibility.
    refused = isinstance(exc, urllib3.exceptions.NewConnectionError)
    return not refused and isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError)


def _reason(exc: BaseException | None) -> str:
    """The innermost OS-level cause ("connection refused"), "no answer in time", else the exception's class."""
    if _timed_out(exc):
        return "no answer in time"
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__ if exc is not None else "unknown error"
