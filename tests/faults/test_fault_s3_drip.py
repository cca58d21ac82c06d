"""Issue 25, an S3 endpoint that answers one byte at a time: each read got its own timeout, so a server
dripping a byte faster than that was never cut off (killed at 150 s). Now each attempt has a deadline for all
of it, and the call fails with one line naming MINIO_TIMEOUT_S. A real server on loopback, not a mock."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from cxrtl.store import StoreError
from cxrtl.store.s3 import S3Settings, S3Store

pytestmark = pytest.mark.faults

TIMEOUT_S = 8.0  # MINIO_TIMEOUT_S: each of 4 attempts gets 1.6 s, each read 1.1 s
DRIP_S = 0.5  # one byte per this: each read is answered well within its timeout
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 1000\r\n\r\n"
# Guards against a hung call, not a speed check.
HANG_S = 300


def _drip(connection: socket.socket, body_only: bool, stop: threading.Event) -> None:
    with connection:
        connection.recv(65536)  # the request
        reply = HEAD + b"<" * 1000
        if body_only:
            connection.sendall(HEAD)
            reply = reply[len(HEAD) :]
        for byte in reply:
            if stop.wait(DRIP_S):
                return
            try:
                connection.sendall(bytes([byte]))
            except OSError:  # the client gave up
                return


@pytest.fixture(params=["headers", "body"])
def dripping(request) -> Iterator[tuple[str, float]]:
    """A server on 127.0.0.1 that drips its answer (headers, or only the body) one byte every DRIP_S."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_drip, args=(connection, request.param == "body", stop), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}", request.param
    stop.set()
    server.close()


@pytest.mark.slow
def test_a_dripping_server_fails_within_the_timeout_naming_it(dripping):
    endpoint, _ = dripping
    settings = S3Settings(endpoint=endpoint, secure=False, access_key="k", secret_key="s", timeout_s=TIMEOUT_S)
    store = S3Store("bucket", settings=settings)
    store._bucket_checked = True  # straight to the object read (bucket_exists would drip the same way)
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            store.get_bytes("some/key")
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    started = time.monotonic()
    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(HANG_S)
    assert outcome, "the call hung"
    print(f"drip ({dripping[1]}): failed after {time.monotonic() - started:.1f} s, MINIO_TIMEOUT_S={TIMEOUT_S:g}")
    [error] = outcome
    assert isinstance(error, StoreError), repr(error)
    line = str(error)
    assert "\n" not in line and endpoint in line and f"MINIO_TIMEOUT_S={TIMEOUT_S:g}" in line, line
