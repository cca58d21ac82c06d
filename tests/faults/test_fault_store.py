"""Issue 14, a hung store: an S3 endpoint that accepts connections and never answers fails within
MINIO_TIMEOUT_S, in one line naming the endpoint and never the credentials."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from refusal import one_error_line

from cxrtl.store import StoreError
from cxrtl.store.s3 import DEFAULT_TIMEOUT_S, S3Settings

pytestmark = pytest.mark.faults

SECRET = "secret-of-the-hung-store"


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """A plain socket server that accepts every connection, reads and never replies."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.mark.slow
def test_a_hung_endpoint_fails_within_the_limit_in_one_line(hung_endpoint: str):
    env = {
        **os.environ,
        "MINIO_ENDPOINT": hung_endpoint,
        "MINIO_ACCESS_KEY": "someone",
        "MINIO_SECRET_KEY": SECRET,
        "MINIO_TIMEOUT_S": "4",
    }
    # Without the limit this waits 4 x 300 s: the subprocess timeout turns that into a failure. With it, seconds
    # and the start of Python: the timeout sits well between both, so that a loaded machine's slow start is no
    # failure.
    done = subprocess.run(
        [sys.executable, "-m", "cxrtl", "store", "--store", "s3://artifacts", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    # urllib3 logs each retry; the rest is the one error line.
    err = "".join(line for line in done.stderr.splitlines(True) if " WARNING urllib3.connectionpool: " not in line)
    line = one_error_line(done.returncode, err, naming=(hung_endpoint, "no answer in time within MINIO_TIMEOUT_S=4 s"))
    assert SECRET not in done.stdout + done.stderr
    assert line.startswith(f"cxrtl: error: cannot reach S3 endpoint {hung_endpoint}")


def test_the_default_limit_is_well_under_a_minute_and_holds_all_attempts():
    settings = S3Settings("host:9000", False, "a", "b")
    timeout = settings.timeouts()
    assert DEFAULT_TIMEOUT_S <= 30
    # four attempts (three retries) with 1.5 s of back-off between them
    assert 4 * (timeout.connect_timeout + timeout.read_timeout) + 1.5 == pytest.approx(DEFAULT_TIMEOUT_S)


@pytest.mark.parametrize("value", ["0", "nan", "inf", "soon"])
def test_a_bad_timeout_setting_is_refused(value: str):
    env = {"MINIO_ENDPOINT": "host:9000", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "b", "MINIO_TIMEOUT_S": value}
    with pytest.raises(StoreError, match=r"^MINIO_TIMEOUT_S="):
        S3Settings.from_env(env)
