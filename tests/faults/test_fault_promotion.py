"""Issue 22: promotion killed after each of its writes, and two promotions racing, on a folder store and on S3
(moto, which honours conditional writes): the champion is always one complete version, a retry ends where one
uninterrupted promotion ends, and of two racing promotions exactly one wins and the other is told in one line.

The kill is a real store underneath a wrapper that raises after its N-th write (each store write is all or
nothing, so a process killed mid-promotion stops between two of them)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from champion_models import SOURCE, card_of, model_files, stored_model

from cxrtl import champion
from cxrtl.promote import Decision, promote
from cxrtl.store import LocalStore, Store, open_store

pytestmark = pytest.mark.faults


class Killed(Exception):
    """The promotion's process died here."""


class Wrapped(Store):
    """A real store, with ``after_write`` called after each of its writes."""

    def __init__(self, store: Store, after_write: Callable[[str], None] = lambda _: None) -> None:
        self.store, self.url, self.after_write = store, store.url, after_write

    def _write(self, name: str, *args):
        result = getattr(self.store, name)(*args)
        self.after_write(name)
        return result

    def put_file(self, key, path, link=False):
        return self._write("put_file", key, path, link)

    def copy(self, key, to):
        return self._write("copy", key, to)

    def put_bytes(self, key, data):
        return self._write("put_bytes", key, data)

    def put_bytes_if(self, key, data, tag):
        return self._write("put_bytes_if", key, data, tag)

    def delete(self, key):
        return self._write("delete", key)

    def create(self):
        return self._write("create")

    def check_conditional_writes(self):
        return self.store.check_conditional_writes()

    def get_file(self, key, path):
        return self.store.get_file(key, path)

    def get_bytes(self, key):
        return self.store.get_bytes(key)

    def read_tagged(self, key):
        return self.store.read_tagged(key)

    def list(self, prefix=""):
        return self.store.list(prefix)

    def exists(self, key):
        return self.store.exists(key)

    def sha256(self, key):
        return self.store.sha256(key)

    def size(self, key):
        return self.store.size(key)


def killed_after(store: Store, n: int) -> Wrapped:
    count = [0]

    def after(name: str) -> None:
        count[0] += 1
        if count[0] == n:
            raise Killed(f"after write {n} ({name})")

    return Wrapped(store, after)


@pytest.fixture(params=["folder", "s3"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes an empty store: a folder, or a bucket on moto."""
    numbers = iter(range(1000))
    if request.param == "folder":
        return lambda: LocalStore(tmp_path / f"store-{next(numbers)}")
    request.getfixturevalue("moto_env")
    server = request.getfixturevalue("moto_server")
    return lambda: open_store(f"s3://{server.make_bucket()}")


def writes_of(action: Callable[[Store], object], store: Store) -> int:
    count = [0]
    action(Wrapped(store, lambda _: count.__setitem__(0, count[0] + 1)))
    return count[0]


def assert_one_complete_champion(store: Store, *allowed: str) -> champion.Champion | None:
    current, problems = champion.inspect(store)
    assert problems == []
    assert current is None or current.pointer.run_id in allowed, current
    return current


@pytest.mark.slow
def test_a_first_promotion_killed_after_any_write_is_finished_by_its_retry(new_store, tmp_path):
    reference = new_store()
    decision = promote(reference, tmp_path, [stored_model(reference, "run-a")])
    assert decision.promoted
    final = reference.list("champion/")

    counted = new_store()
    model = stored_model(counted, "run-a")
    writes = writes_of(lambda s: promote(s, tmp_path, [model]), counted)
    assert writes >= 8  # the model's three files, card, card.md, decision, pointer, history, decision record
    for n in range(1, writes):
        store = new_store()
        model = stored_model(store, "run-a")
        with pytest.raises(Killed):
            promote(killed_after(store, n), tmp_path, [model])
        assert_one_complete_champion(store, "run-a")
        retried = promote(store, tmp_path, [model])
        assert retried.promoted and retried.reason == decision.reason, n
        assert champion.current(store).names("run-a", SOURCE)
        assert store.list("champion/") == final, n
        # ... and a second retry returns the recorded decision, writing nothing.
        assert writes_of(lambda s, model=model: promote(s, tmp_path, [model]), store) == 0


@pytest.mark.slow
def test_a_promotion_over_a_champion_killed_after_any_write_leaves_one_of_them(new_store):
    def prepared() -> tuple[Store, champion.Champion, object]:
        store = new_store()
        assert promote(store, Path("unused"), [stored_model(store, "run-a")]).promoted
        return store, champion.current(store), stored_model(store, "run-b")

    def install(store: Store, expected: champion.Champion, model) -> champion.Champion | None:
        decision = {"champion": {"run_id": "run-a", "source": SOURCE}, "promoted": True}
        card = card_of(model)
        return champion.install(store, "run-b", SOURCE, model_files("run-b"), card, "card", decision, expected)

    store, before, model = prepared()
    writes = writes_of(lambda s: install(s, before, model), store)
    for n in range(1, writes):
        store, before, model = prepared()
        with pytest.raises(Killed):
            install(killed_after(store, n), before, model)
        assert_one_complete_champion(store, "run-a", "run-b")
        assert install(store, before, model).names("run-b", SOURCE)  # the retry, from the same champion
        assert_one_complete_champion(store, "run-b")


def test_two_promotions_racing_end_with_exactly_one_champion(new_store, tmp_path):
    """Both decide against the same champion (none), then both try to move the pointer at once."""
    store = new_store()
    models = {run: stored_model(store, run) for run in ("run-a", "run-b")}
    at_the_pointer = threading.Barrier(2, timeout=60)

    class Gated(Wrapped):
        def put_bytes_if(self, key, data, tag):
            at_the_pointer.wait()  # both have decided; now both swap
            return super().put_bytes_if(key, data, tag)

    decisions: dict[str, Decision] = {}

    def run(run_id: str) -> None:
        decisions[run_id] = promote(Gated(store), tmp_path, [models[run_id]])

    threads = [threading.Thread(target=run, args=(run_id,)) for run_id in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [run for run, decision in decisions.items() if decision.promoted]
    assert len(winners) == 1, decisions
    (loser,) = set(models) - set(winners)
    current = assert_one_complete_champion(store, winners[0])
    assert current.names(winners[0], SOURCE)
    note = decisions[loser].note()
    assert "\n" not in note
    assert note.startswith(
        f"Promotion: {SOURCE} not promoted: another promotion changed the champion (now {SOURCE} from run "
        f"{winners[0]}) while this one was deciding"
    )
    # Each run's decision is recorded as it was told: a retry of the loser does not promote it after all.
    assert promote(store, tmp_path, [models[loser]]) == decisions[loser]
    assert champion.current(store).names(winners[0], SOURCE)
