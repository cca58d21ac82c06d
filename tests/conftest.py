"""Shared fixtures. ``s3_server``: a real S3 server (s3rver, SigV4, checks keys) on loopback.
``moto_server``: moto's S3 in server mode on loopback (tests/moto_server.py), which, unlike s3rver, honours
conditional writes (If-Match / If-None-Match on PUT), for the champion pointer's compare-and-swap.
``image_registry``: a real OCI registry on loopback (tests/oci_registry.py) for submit's image check.

``make test`` installs s3rver (``npm ci --prefix tests/s3rver``), and moto comes with the test extra; without
them the S3 tests fail, never skip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

S3RVER_DIR = Path(__file__).parent / "s3rver"
MOTO_SERVER = Path(__file__).parent / "moto_server.py"
# A guard against a server that hangs while starting, not a speed check: minutes, as node may take tens of
# seconds to start on a machine shared by many busy processes.
_START_LIMIT_S = 300
_bucket_numbers = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class S3Server:
    """A running s3rver: where it listens, its one valid key pair, and the folder it stores into."""

    endpoint: str  # 127.0.0.1:PORT
    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    directory: Path

    def env(self) -> dict[str, str]:
        """The MINIO_* variables that point the store (or a subprocess) at this server."""
        return {
            "MINIO_ENDPOINT": self.endpoint,
            "MINIO_ACCESS_KEY": self.access_key,
            "MINIO_SECRET_KEY": self.secret_key,
            "MINIO_SECURE": "false",
        }

    def client(self, secret_key: str | None = None) -> Minio:
        """A plain minio client, for looking at (or tampering with) the bucket behind the store's back."""
        return Minio(self.endpoint, self.access_key, secret_key or self.secret_key, secure=False)

    def make_bucket(self) -> str:
        """A new, empty bucket; its name."""
        name = f"test-{next(_bucket_numbers)}-{secrets.token_hex(3)}"
        self.client().make_bucket(name)
        return name

    def incomplete_uploads(self, bucket: str) -> list[str]:
        """Multipart uploads started and neither completed nor aborted (read from s3rver's folder)."""
        uploads = self.directory / bucket / "._S3rver_uploads"
        return sorted(p.name for p in uploads.iterdir()) if uploads.is_dir() else []


@contextlib.contextmanager
def _serving(name: str, argv: list[str], log_path: Path, **popen) -> Iterator[int]:
    """Start a server that prints a JSON line with its ``port`` once it listens and stops when its stdin closes;
    yield the port; stop it (terminate, then kill) however the tests end."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, **popen)
    try:
        ready, _, _ = select.select([process.stdout], [], [], _START_LIMIT_S)
        line = process.stdout.readline() if ready else ""
        try:
            port = json.loads(line)["port"]
        except (ValueError, KeyError):
            pytest.fail(f"{name} did not start (ready line {line!r}): {log_path.read_text().strip()[-2000:]}")
        yield port
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the S3 tests need Node.js to run tests/s3rver (see `make test`)")
    if not (S3RVER_DIR / "node_modules" / "@20minutes" / "s3rver").is_dir():
        pytest.fail("tests/s3rver/node_modules is missing: run `make test` (it runs `npm ci --prefix tests/s3rver`)")

    directory = tmp_path_factory.mktemp("s3rver-data")
    log_path = tmp_path_factory.mktemp("s3rver-log") / "stderr.log"
    access_key, secret_key = f"cxrtl-test-{secrets.token_hex(4)}", f"secret-{secrets.token_hex(16)}"
    env = {**os.environ, "S3RVER_ACCESS_KEY": access_key, "S3RVER_SECRET_KEY": secret_key}
    argv = [node, "server.js", "--port", "0", "--directory", str(directory), "--stop-on-stdin-eof"]
    with _serving("s3rver", argv, log_path, cwd=S3RVER_DIR, env=env) as port:
        yield S3Server(f"127.0.0.1:{port}", access_key, secret_key, directory)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    log_path = tmp_path_factory.mktemp("moto-log") / "stderr.log"
    with _serving("moto", [sys.executable, str(MOTO_SERVER)], log_path) as port:
        # moto accepts any key pair; its folder is unused (it keeps objects in memory).
        yield S3Server(f"127.0.0.1:{port}", "cxrtl-moto", f"secret-{secrets.token_hex(16)}", log_path.parent)


@pytest.fixture(scope="session")
def image_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An open registry's ``127.0.0.1:PORT``; push to it with oci_registry.push."""
    from oci_registry import registry

    storage = tmp_path_factory.mktemp("registry") / "storage"
    storage.mkdir()
    with registry(storage) as address:
        yield address


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> str:
    """MINIO_* set for ``s3_server`` (subprocesses inherit them); returns ``s3://BUCKET`` of a fresh bucket."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{s3_server.make_bucket()}"


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch, moto_server: S3Server) -> str:
    """MINIO_* set for ``moto_server``; returns ``s3://BUCKET`` of a fresh bucket."""
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{moto_server.make_bucket()}"


# --- Tiny data and weights, shared by the training, evaluation and pipeline tests -------------------------

TINY_SIZE = 64  # px: ResNet50 trains at ~40 img/s here at this size


@pytest.fixture(scope="session")
def demo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset in the Kaggle layout, 12 images per class."""
    from cxrtl.demo_data import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo"), per_class=12, seed=0)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory, demo_zip: Path) -> dict[str, Path]:
    """The demo data ingested and preprocessed at 64 px, once per recipe: {"paper": dir, "recommended": dir}."""
    from cxrtl.ingest import ingest
    from cxrtl.preprocess import preprocess

    root = tmp_path_factory.mktemp("prepared")
    ingest(str(demo_zip), root / "raw")
    folders = {}
    for recipe in ("paper", "recommended"):
        preprocess(root / "raw", root / recipe, recipe=recipe, image_size=TINY_SIZE)
        folders[recipe] = root / recipe
    return folders


@pytest.fixture(scope="session")
def stand_in_store(tmp_path_factory: pytest.TempPathFactory):
    """A folder store holding a stand-in checkpoint for imagenet and moco-v2 (two different native formats)."""
    from cxrtl.store import LocalStore
    from cxrtl.weights import put_weights, write_stand_in

    root = tmp_path_factory.mktemp("weights")
    store = LocalStore(root / "store")
    for source in ("imagenet", "moco-v2"):
        path = write_stand_in(source, root / f"{source}.pth")
        put_weights(store, source, path, stand_in=True)
        path.unlink()
    return store
