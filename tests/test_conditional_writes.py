"""Compare-and-swap (Store.put_bytes_if): on a folder (flock and rename) and on an S3 server that honours
conditional writes (moto, tests/moto_server.py); refused, in one line, on one that ignores them (s3rver)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cxrtl.retrain import check_for_changes
from cxrtl.store import LocalStore, Store, StoreError, open_store

KEY = "champion/current.json"


@pytest.fixture(params=["folder", "moto"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "folder":
        return LocalStore(tmp_path / "store")
    return open_store(f"{request.getfixturevalue('moto_env')}/prefix")


def test_a_write_lands_only_on_the_version_it_names(store: Store) -> None:
    assert store.read_tagged(KEY) is None
    assert store.put_bytes_if(KEY, b"first", None)
    assert not store.put_bytes_if(KEY, b"second first", None)  # it exists now
    first = store.read_tagged(KEY)
    assert first.data == b"first"

    assert store.put_bytes_if(KEY, b"second", first.tag)
    assert not store.put_bytes_if(KEY, b"from a stale read", first.tag)
    second = store.read_tagged(KEY)
    assert second.data == b"second" and second.tag != first.tag
    assert store.get_bytes(KEY) == b"second"  # written with its sha256, like any object
    assert store.list("champion/") == [KEY]  # no lock file or probe shows as a key


def test_of_writers_racing_from_one_version_exactly_one_wins(store: Store) -> None:
    store.put_bytes(KEY, b"start")
    start = store.read_tagged(KEY)
    writers = 6
    barrier = threading.Barrier(writers)
    won: list[int] = []

    def write(n: int) -> None:
        barrier.wait()
        if store.put_bytes_if(KEY, f"writer {n}".encode(), start.tag):
            won.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert store.get_bytes(KEY) == f"writer {won[0]}".encode()


def test_a_server_that_ignores_conditional_writes_is_refused(s3_env: str) -> None:
    """s3rver accepts If-Match and If-None-Match on PUT and overwrites anyway: two promotions could both win."""
    store = open_store(s3_env)
    store.put_bytes(KEY, b"start")
    start = store.read_tagged(KEY)
    with pytest.raises(StoreError, match=r"^the S3 server at 127\.0\.0\.1:\d+ ignores conditional writes \("):
        store.put_bytes_if(KEY, b"new", start.tag)
    assert store.get_bytes(KEY) == b"start"
    assert store.list("state/") == []  # the probe is gone


def test_a_run_on_such_a_server_stops_at_its_start(s3_env: str) -> None:
    """Not after all the training, at promotion: check-changes checks the store first."""
    store = open_store(s3_env)
    with pytest.raises(StoreError, match=r"ignores conditional writes .* use MinIO or AWS S3$"):
        check_for_changes(store, {"x": 1}, "run-1")
    assert store.list() == []
