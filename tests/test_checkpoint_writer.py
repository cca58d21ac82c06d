"""Checkpoints written off the training thread: a slow store holds training back by no more than the writer's
queue, and no two writes of one key overlap. Asserted on the order of events, never on time."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from cxrtl.checkpoints import QUEUE_DEPTH, BackgroundWriter
from cxrtl.recipes import TrainConfig
from cxrtl.store import LocalStore
from cxrtl.train import train

# Guards against a hang, not speed checks: half an hour, as a machine shared by
# many busy processes (load 17 on 2 cores) took over 5 minutes for a 2-epoch run.
WAIT_S = 1800


class GatedStore(LocalStore):
    """A folder store whose writes wait until ``open`` is set, noting when each starts and ends."""

    def __init__(self, root: Path, events: list[tuple[str, str]]) -> None:
        super().__init__(root)
        self.events = events
        self.open = threading.Event()
        self._writing: set[str] = set()
        self.overlaps: list[str] = []
        self._lock = threading.Lock()

    def put_file(self, key: str, path: Path, link: bool = False) -> str:
        with self._lock:
            if key in self._writing:
                self.overlaps.append(key)
            self._writing.add(key)
        self.events.append(("put-start", key))
        try:
            assert self.open.wait(WAIT_S), "never opened"
            return super().put_file(key, path, link)
        finally:
            self.events.append(("put-end", key))
            with self._lock:
                self._writing.discard(key)


class EpochEnds(logging.Handler):
    """Notes each epoch's end (its 'train loss' line) among the store's events."""

    def __init__(self, events: list[tuple[str, str]]) -> None:
        super().__init__()
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if ": train loss" in message:
            self.events.append(("epoch-end", message.split(":")[0].split()[-1]))  # "2/3"


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)


@pytest.mark.slow  # trains
def test_training_runs_on_while_a_slow_store_writes_and_waits_only_on_a_full_queue(stand_in_store, prepared, tmp_path):
    events: list[tuple[str, str]] = []
    store = GatedStore(tmp_path / "store", events)
    for key in stand_in_store.list("weights/imagenet/"):
        stand_in_store.get_file(key, tmp_path / "w")
        LocalStore.put_file(store, key, tmp_path / "w")
    config = TrainConfig.from_recipe("paper", epochs=4, batch_size=8, checkpoint_minutes=0, device="cpu")
    handler = EpochEnds(events)
    train_logger = logging.getLogger("cxrtl.train")
    level = train_logger.level
    train_logger.addHandler(handler)
    train_logger.setLevel(logging.INFO)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            train(prepared["paper"], "imagenet", tmp_path / "model", config, store, "gated")
        except BaseException as exc:
            failure.append(exc)

    trainer = threading.Thread(target=run)
    trainer.start()
    try:
        # Epoch 1's checkpoint is being written (held), epoch 2's waits in the queue, epoch 3's cannot be
        # queued: training has finished epoch 3 and stops there.
        _wait(lambda: ("epoch-end", "3/4") in events, "end of epoch 3")
        assert ("epoch-end", "4/4") not in events
        assert [e for e in events if e[0] == "put-end"] == []
        assert sum(1 for e in events if e[0] == "put-start") == 1  # one write at a time: best-epoch-001 first
    finally:
        store.open.set()
        trainer.join(WAIT_S)
        train_logger.removeHandler(handler)
        train_logger.setLevel(level)
    assert not failure, failure
    first_put_end = next(i for i, e in enumerate(events) if e[0] == "put-end")
    assert events.index(("epoch-end", "2/4")) < first_put_end  # epoch 2 ran while epoch 1's checkpoint waited
    assert store.overlaps == []
    assert (tmp_path / "model" / "model.pt").is_file()
    assert store.list("runs/gated/") == ["runs/gated/imagenet/identity.json"]  # done, no --keep-checkpoints


def test_the_writer_runs_one_job_at_a_time_and_blocks_a_submit_only_when_its_queue_is_full():
    release, started = threading.Event(), threading.Event()
    running, overlaps, done = [0], [], []

    def job(n: int):
        def run() -> None:
            running[0] += 1
            if running[0] > 1:
                overlaps.append(n)
            started.set()
            assert release.wait(WAIT_S)
            done.append(n)
            running[0] -= 1

        return run

    writer = BackgroundWriter(depth=QUEUE_DEPTH)
    writer.submit(job(1))
    assert started.wait(WAIT_S)
    writer.submit(job(2))  # queued behind the running job: returns at once
    blocked = threading.Thread(target=writer.submit, args=(job(3),))
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive()  # the queue is full: the third submit waits
    release.set()
    blocked.join(WAIT_S)
    writer.flush()
    writer.close()
    assert done == [1, 2, 3] and overlaps == []


def test_a_failed_write_is_raised_in_the_training_thread():
    writer = BackgroundWriter()

    def fail() -> None:
        raise OSError(28, "No space left on device")

    writer.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    writer.close()
