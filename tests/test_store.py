"""The artifact store: one behaviour suite over a folder and a real S3 server (s3rver), plus the
S3-only failure modes (credentials, endpoint down, missing bucket, interrupted uploads)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from minio.error import S3Error
from refusal import one_error_line, refused

from cxrtl.cli import main
from cxrtl.store import LocalStore, Store, StoreError, open_store, sha256_file
from cxrtl.store.s3 import RETRIES, S3Settings, S3Store

PART = 5 << 20  # the smallest part S3 allows, so a test file spans several parts
PREFIX = "scope"  # the S3 backend works under a prefix, so every shared test also checks prefix scoping


@dataclasses.dataclass
class Backend:
    name: str
    store: Store
    overwrite: Callable[[str, bytes], None]  # replace an object's content, keeping its recorded sha256
    drop_checksum: Callable[[str], None]  # rewrite an object as it is, without a recorded sha256


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        local = LocalStore(tmp_path / "store")
        return Backend(
            "local",
            local,
            overwrite=lambda key, data: (local.root / key).write_bytes(data),
            drop_checksum=lambda key: Path(f"{local.root / key}.sha256").unlink(),
        )

    url = request.getfixturevalue("s3_env")
    client = request.getfixturevalue("s3_server").client()
    s3 = S3Store.from_url(f"{url}/{PREFIX}", part_size=PART)

    def put_raw(key: str, data: bytes, metadata: dict[str, str] | None) -> None:
        client.put_object(s3.bucket, f"{PREFIX}/{key}", io.BytesIO(data), len(data), metadata=metadata)

    def get_raw(key: str) -> bytes:
        response = client.get_object(s3.bucket, f"{PREFIX}/{key}")
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    return Backend(
        "s3",
        s3,
        overwrite=lambda key, data: put_raw(key, data, {"sha256": s3.sha256(key)}),
        drop_checksum=lambda key: put_raw(key, get_raw(key), None),
    )


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the same behaviour on every backend -------------------------------------------------------------


def test_bytes_and_json_round_trip(backend: Backend) -> None:
    store = backend.store
    digest = store.put_bytes("reports/r1/notes.txt", b"first")
    assert digest == hashlib.sha256(b"first").hexdigest()
    assert store.get_bytes("reports/r1/notes.txt") == b"first"
    assert store.sha256("reports/r1/notes.txt") == digest
    assert store.size("reports/r1/notes.txt") == len(b"first")

    store.put_bytes("reports/r1/notes.txt", b"second")
    assert store.get_bytes("reports/r1/notes.txt") == b"second"
    store.put_bytes("reports/r1/empty", b"")
    assert store.get_bytes("reports/r1/empty") == b""

    summary = {"auc": 0.97, "sources": ["imagenet", "chexpert"], "epochs": 3}
    store.put_json("reports/r1/summary.json", summary)
    assert store.get_json("reports/r1/summary.json") == summary

    store.put_bytes("reports/r1/broken.json", b"{not json")
    with pytest.raises(StoreError, match=r"reports/r1/broken\.json is not JSON"):
        store.get_json("reports/r1/broken.json")


def test_file_round_trip_larger_than_a_part(backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "model.pt"
    source.write_bytes(os.urandom(2 * PART + 12345))
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")

    digest = backend.store.put_file("models/imagenet/r1/model.pt", source)
    assert digest == sha256_file(source)
    target = tmp_path / "fetched" / "model.pt"
    assert backend.store.get_file("models/imagenet/r1/model.pt", target) == digest
    assert target.read_bytes() == source.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["model.pt"]  # no temporary file left
    if backend.name == "s3":
        # urllib3 logs each request line: the file went up as three parts (5 + 5 + 0.01 MiB).
        parts = {line.split("partNumber=")[1].split("&")[0] for line in caplog.messages if "partNumber=" in line}
        assert parts == {"1", "2", "3"}


def test_list_exists_delete(backend: Backend) -> None:
    store = backend.store
    assert store.list() == []
    keys = ["runs/r1/imagenet/checkpoints/epoch-001.pt", "runs/r1/imagenet/checkpoints/epoch-002.pt", "runs/r2/x"]
    for key in keys:
        store.put_bytes(key, key.encode())
    store.put_bytes("weights/imagenet/abc.pth", b"w")

    assert store.list("runs/r1/") == keys[:2]
    assert store.list("runs/") == keys
    assert store.list() == [*keys, "weights/imagenet/abc.pth"]
    assert store.list("nothing/") == []
    assert store.exists("runs/r2/x")
    assert not store.exists("runs/r2")  # a prefix is not an object

    store.delete("runs/r2/x")
    assert not store.exists("runs/r2/x")
    store.delete("runs/r2/x")  # deleting twice is not an error
    assert store.list("runs/") == keys[:2]


def test_missing_object_is_a_clear_error(backend: Backend, tmp_path: Path) -> None:
    for read in (
        backend.store.get_bytes,
        backend.store.sha256,
        backend.store.size,
        lambda key: backend.store.get_file(key, tmp_path / "x"),
    ):
        with pytest.raises(StoreError, match=r": no object datasets/none/v1/raw\.zip$"):
            read("datasets/none/v1/raw.zip")
    assert not (tmp_path / "x").exists()


def test_copy_stays_in_the_store_keeps_the_sha256_and_refuses_what_fails_it(backend: Backend, tmp_path: Path) -> None:
    store = backend.store
    source = tmp_path / "model.pt"
    source.write_bytes(os.urandom(PART + 1))  # a multipart object: S3 copies it whole on the server
    digest = store.put_file("models/imagenet/r1/model.pt", source)

    assert store.copy("models/imagenet/r1/model.pt", "champion/model.pt") == digest
    assert store.sha256("champion/model.pt") == digest
    assert store.get_file("champion/model.pt", tmp_path / "champion.pt") == digest
    if backend.name == "local":  # one file on disk, under two names
        root = store.root
        assert (root / "champion/model.pt").stat().st_ino == (root / "models/imagenet/r1/model.pt").stat().st_ino

    # A later put replaces the copy's name only; the original stays what it was.
    store.put_bytes("champion/model.pt", b"another champion")
    assert store.get_file("models/imagenet/r1/model.pt", tmp_path / "again.pt") == digest

    with pytest.raises(StoreError, match=r": no object models/none/r1/model\.pt$"):
        store.copy("models/none/r1/model.pt", "champion/other.pt")
    backend.overwrite("models/imagenet/r1/model.pt", b"damaged")
    if backend.name == "local":  # the folder store reads the file it links; S3 copies unread, reads verify
        with pytest.raises(StoreError, match=r"models/imagenet/r1/model\.pt fails its sha256 check"):
            store.copy("models/imagenet/r1/model.pt", "champion/other.pt")
        assert not store.exists("champion/other.pt")
    else:
        store.copy("models/imagenet/r1/model.pt", "champion/other.pt")
        with pytest.raises(StoreError, match=r"champion/other\.pt fails its sha256 check"):
            store.get_bytes("champion/other.pt")


@pytest.mark.parametrize("key", ["", "/", "a/../b", "./a", ".."])
def test_invalid_keys_are_refused(backend: Backend, key: str) -> None:
    with pytest.raises(StoreError, match="invalid store key"):
        backend.store.put_bytes(key, b"x")


@pytest.mark.parametrize("tamper", ["overwrite", "drop_checksum"])
def test_tampered_object_is_refused(backend: Backend, tmp_path: Path, tamper: str) -> None:
    key = "weights/imagenet/abc.pth"
    backend.store.put_bytes(key, b"the real weights")
    if tamper == "overwrite":
        backend.overwrite(key, b"something else!")
        expected = r"weights/imagenet/abc\.pth fails its sha256 check"
    else:
        backend.drop_checksum(key)
        expected = r"weights/imagenet/abc\.pth has no recorded sha256"

    with pytest.raises(StoreError, match=expected):
        backend.store.get_bytes(key)
    with pytest.raises(StoreError, match=expected):
        backend.store.get_file(key, tmp_path / "out" / "abc.pth")
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written


def test_cli_round_trip(backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = backend.store.url
    source = tmp_path / "report.html"
    source.write_text("<h1>report</h1>")
    digest = sha256_file(source)

    assert main(["store", "--store", url, "put", "reports/r1/report.html", str(source)]) == 0
    assert digest in capsys.readouterr().out
    assert main(["store", "--store", url, "ls"]) == 0
    assert capsys.readouterr().out.splitlines() == ["reports/r1/report.html"]
    assert main(["store", "ls", "reports/r2", "--store", url]) == 0  # --store after the action works too
    assert capsys.readouterr().out == ""

    assert main(["store", "--store", url, "get", "reports/r1/report.html", str(tmp_path / "copy.html")]) == 0
    assert (tmp_path / "copy.html").read_text() == "<h1>report</h1>"
    (tmp_path / "into").mkdir()
    assert main(["store", "--store", url, "get", "reports/r1/report.html", str(tmp_path / "into")]) == 0
    assert (tmp_path / "into" / "report.html").read_text() == "<h1>report</h1>"

    assert main(["store", "--store", url, "rm", "reports/r1/report.html"]) == 0
    assert not backend.store.exists("reports/r1/report.html")
    line = refused(capsys, ["store", "--store", url, "rm", "reports/r1/report.html"])
    assert line == f"cxrtl: error: {url}: no object reports/r1/report.html"
    line = refused(capsys, ["store", "--store", url, "put", "k", str(tmp_path / "missing.bin")])
    assert line == f"cxrtl: error: {tmp_path / 'missing.bin'}: no such file to upload"
    assert not backend.store.exists("k")


# -- S3 only ---------------------------------------------------------------------------------------


def test_the_test_server_checks_signatures(s3_server, s3_env: str) -> None:
    bucket = s3_env.removeprefix("s3://")
    assert list(s3_server.client().list_objects(bucket)) == []
    with pytest.raises(S3Error) as caught:
        list(s3_server.client(secret_key="not-the-secret").list_objects(bucket))
    assert caught.value.code == "SignatureDoesNotMatch"


def test_prefix_scopes_every_key(s3_env: str) -> None:
    team_a, team_b, root = (S3Store.from_url(u) for u in (f"{s3_env}/team/a", f"{s3_env}/team/b/", s3_env))
    team_a.put_bytes("k", b"a's")
    assert root.list() == ["team/a/k"]
    assert root.get_bytes("team/a/k") == b"a's"
    assert team_a.list() == ["k"]
    assert not team_b.exists("k")
    assert team_b.list() == []
    assert team_b.url == f"{s3_env}/team/b"


def test_wrong_secret_is_a_clear_error_that_hides_it(
    s3_server,
    s3_env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "wrong-secret-0123456789abcdef"
    monkeypatch.setenv("MINIO_SECRET_KEY", wrong)
    store = open_store(s3_env)
    assert wrong not in repr(store) and wrong not in repr(store.settings)

    expected = rf"^access denied by {s3_server.endpoint} \(\w+\): check MINIO_ACCESS_KEY and MINIO_SECRET_KEY$"
    for operation in (lambda: store.exists("k"), lambda: store.put_bytes("k", b"x"), store.list):
        with pytest.raises(StoreError, match=expected) as caught:
            operation()
        for exc in _chain(caught.value):
            for secret in (wrong, s3_server.secret_key):
                assert secret not in str(exc) and secret not in repr(exc)

    caplog.clear()
    capsys.readouterr()
    status = main(["store", "--store", s3_env, "ls"])
    out, err = capsys.readouterr()
    one_error_line(status, err, f"cxrtl: error: access denied by {s3_server.endpoint}")
    for text in (out, err, caplog.text):
        assert wrong not in text and s3_server.secret_key not in text


@pytest.mark.slow
def test_endpoint_down_is_retried_then_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MINIO_ENDPOINT", endpoint)
    monkeypatch.setenv("MINIO_ACCESS_KEY", "someone")
    monkeypatch.setenv("MINIO_SECRET_KEY", "secret-of-someone")
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")

    with pytest.raises(StoreError, match=rf"^cannot reach S3 endpoint {endpoint} after {RETRIES + 1} attempts"):
        open_store("s3://artifacts").exists("k")
    retries = [r for r in caplog.records if r.name == "urllib3.connectionpool" and "Retrying" in r.getMessage()]
    assert len(retries) == RETRIES

    line = refused(capsys, ["store", "--store", "s3://artifacts", "ls"])
    assert line == (
        f"cxrtl: error: cannot reach S3 endpoint {endpoint} after {RETRIES + 1} attempts (connection refused): "
        "check MINIO_ENDPOINT and that the server is up"
    )
    assert "secret-of-someone" not in line + caplog.text


class _NotS3(http.server.BaseHTTPRequestHandler):
    """A web server that is not S3: every request gets a 404 HTML page."""

    def log_message(self, *args) -> None:
        pass

    def _answer(self) -> None:
        body = b"<html><body>no such page</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = _answer


def test_an_endpoint_that_is_not_s3_is_named_with_its_http_status(monkeypatch: pytest.MonkeyPatch) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotS3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("MINIO_ENDPOINT", endpoint)
        monkeypatch.setenv("MINIO_ACCESS_KEY", "someone")
        monkeypatch.setenv("MINIO_SECRET_KEY", "secret-of-someone")
        expected = rf"^{endpoint} did not answer as an S3 server \(HTTP 404\): check MINIO_ENDPOINT$"
        for operation in (lambda store: store.exists("k"), lambda store: store.put_bytes("k", b"x")):
            with pytest.raises(StoreError, match=expected):
                operation(open_store("s3://artifacts"))
    finally:
        server.shutdown()
        server.server_close()


def test_missing_bucket_is_named_and_mb_creates_it(s3_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"{s3_env}-new"
    bucket = url.removeprefix("s3://")
    store = open_store(url)
    for operation in (lambda: store.exists("k"), store.list, lambda: store.put_bytes("k", b"x")):
        with pytest.raises(StoreError, match=rf"^bucket '{bucket}' does not exist at .*`cxrtl store --store {url} mb`"):
            operation()

    assert main(["store", "--store", url, "mb"]) == 0
    assert main(["store", "--store", url, "mb"]) == 0  # already there: fine
    assert capsys.readouterr().out.splitlines() == [url, url]
    assert open_store(url).list() == []


class _FailingReader:
    """Yields zeros, then raises ``error`` once ``fail_at`` bytes have been read, noting the
    multipart uploads the server holds at that moment."""

    def __init__(self, fail_at: int, error: BaseException, uploads: Callable[[], list[str]]) -> None:
        self.position, self.fail_at, self.error, self.uploads = 0, fail_at, error, uploads
        self.uploads_at_failure: list[str] | None = None

    def read(self, size: int = -1) -> bytes:
        if self.position + size > self.fail_at:
            self.uploads_at_failure = self.uploads()
            raise self.error
        self.position += size
        return bytes(size)


@pytest.mark.parametrize(
    ("error", "raised"),
    [(OSError(5, "Input/output error"), StoreError), (KeyboardInterrupt(), KeyboardInterrupt)],
    ids=["read-error", "ctrl-c"],
)
def test_interrupted_put_leaves_no_object_and_no_upload(
    s3_server, s3_env: str, error: BaseException, raised: type[BaseException]
) -> None:
    store = S3Store.from_url(s3_env, part_size=PART)
    store.put_bytes("runs/r1/imagenet/checkpoints/epoch-001.pt", b"the earlier checkpoint")
    reader = _FailingReader(PART + 1, error, lambda: s3_server.incomplete_uploads(store.bucket))

    # _put is the one upload path behind put_file and put_bytes; a reader is the way to fail halfway.
    with pytest.raises(raised):
        store._put("runs/r1/imagenet/checkpoints/epoch-001.pt", reader, 3 * PART, "0" * 64)
    assert len(reader.uploads_at_failure) == 1  # the failure came in the middle of a multipart upload
    assert s3_server.incomplete_uploads(store.bucket) == []
    assert store.list() == ["runs/r1/imagenet/checkpoints/epoch-001.pt"]
    assert store.get_bytes("runs/r1/imagenet/checkpoints/epoch-001.pt") == b"the earlier checkpoint"


_SETTINGS = {"MINIO_ENDPOINT": "h:9000", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "^MINIO_ENDPOINT is not set"),
        ({"MINIO_ENDPOINT": "h:9000"}, "^MINIO_ACCESS_KEY is not set"),
        ({"MINIO_ENDPOINT": "h:9000", "MINIO_ACCESS_KEY": "a"}, "^MINIO_SECRET_KEY is not set"),
        ({**_SETTINGS, "MINIO_SECURE": "maybe"}, "^MINIO_SECURE='maybe': use true or false"),
        ({**_SETTINGS, "MINIO_ENDPOINT": "https://h:9000", "MINIO_SECURE": "false"}, "contradicts MINIO_SECURE"),
        ({**_SETTINGS, "MINIO_ENDPOINT": "ftp://h:21"}, "^MINIO_ENDPOINT='ftp://h:21': use HOST:PORT or http"),
        ({**_SETTINGS, "MINIO_ENDPOINT": "h:9000/minio"}, "^MINIO_ENDPOINT='h:9000/minio': use HOST:PORT"),
        ({**_SETTINGS, "MINIO_ENDPOINT": "http://u:pw-in-url@h:9000"}, "^MINIO_ENDPOINT carries credentials"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        S3Settings.from_env(env)
    assert "pw-in-url" not in str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "secure", "expected"),
    [
        ("minio.kubeflow:9000", "", ("minio.kubeflow:9000", False)),
        ("minio.kubeflow:9000", "true", ("minio.kubeflow:9000", True)),
        ("https://minio.example.org", "", ("minio.example.org", True)),
        ("http://127.0.0.1:9000/", "false", ("127.0.0.1:9000", False)),
    ],
)
def test_endpoint_forms(endpoint: str, secure: str, expected: tuple[str, bool]) -> None:
    settings = S3Settings.from_env({**_SETTINGS, "MINIO_ENDPOINT": endpoint, "MINIO_SECURE": secure})
    assert (settings.endpoint, settings.secure) == expected


@pytest.mark.parametrize("url", ["s3://", "s3://No_Such/x", "s3://bucket?x=1", "s3://bucket/../x"])
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(StoreError, match=r"store URL|invalid store key"):
        S3Store.from_url(url, settings=S3Settings("h:1", False, "a", "s"))


def test_large_transfers_report_their_progress_and_small_ones_do_not(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Off a terminal (as here and in KFP pods) progress is a line per tenth; the size limit is lowered so that a
    test-sized object counts as large."""
    import cxrtl.store.s3 as s3

    caplog.set_level(logging.INFO, logger="cxrtl.store.s3")
    store = S3Store.from_url(s3_env, part_size=PART)
    data = tmp_path / "model.pt"
    data.write_bytes(bytes(2 * PART))
    store.put_file("small.json", data)  # 10 MiB, below the default limit of 64 MiB
    assert not [r for r in caplog.records if "%)" in r.getMessage()]

    monkeypatch.setattr(s3, "_PROGRESS_FROM_BYTES", 1)
    store.put_file("models/x/model.pt", data)
    store.get_file("models/x/model.pt", tmp_path / "back.pt")
    lines = [r.getMessage() for r in caplog.records if "%)" in r.getMessage()]
    # minio reads the upload a part (5 MiB) at a time; the download comes in smaller chunks.
    assert lines[:2] == [
        "uploading models/x/model.pt: 5.2 of 10.5 MB (50%)",
        "uploading models/x/model.pt: 10.5 of 10.5 MB (100%)",
    ]
    downloads = [line for line in lines[2:] if line.startswith("downloading models/x/model.pt: ")]
    assert downloads == lines[2:] and len(downloads) == 10 and downloads[-1].endswith("10.5 of 10.5 MB (100%)")
    assert (tmp_path / "back.pt").read_bytes() == data.read_bytes()


def test_the_folder_store_links_a_file_only_when_asked_and_copies_otherwise(tmp_path):
    """A model put by train (link=True) is one file on disk with the pipeline's artifact, and a later put
    replaces the store's name with a new file, never changing the artifact's. Any other put is a copy: a file
    changed in place afterwards (a user's, or a store object damaged on disk) must not change the other."""
    store = LocalStore(tmp_path / "store")
    model = tmp_path / "artifact" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(b"weights, 1")
    store.put_file("models/imagenet/run/model.pt", model, link=True)
    stored = store.root / "models" / "imagenet" / "run" / "model.pt"
    assert stored.stat().st_ino == model.stat().st_ino
    assert store.sha256("models/imagenet/run/model.pt") == sha256_file(model)

    store.put_bytes("models/imagenet/run/model.pt", b"weights, 2")
    assert model.read_bytes() == b"weights, 1" and stored.read_bytes() == b"weights, 2"

    store.put_file("weights/imagenet/resnet50.pth", model)
    copy = store.root / "weights" / "imagenet" / "resnet50.pth"
    assert copy.stat().st_ino != model.stat().st_ino
    with open(copy, "r+b") as f:
        f.write(b"damaged")
    assert model.read_bytes() == b"weights, 1"
