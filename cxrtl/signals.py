"""SIGTERM, which Kubernetes sends a pod before it kills it, taken like Ctrl-C (SIGINT).

Outside training it raises :class:`Terminated`, a ``KeyboardInterrupt``, so every clean-up path that
Ctrl-C takes (aborted multipart uploads, removed temporary files, the CLI's non-zero exit) serves it too.
Inside :func:`deferred` (the training loop, and the checkpoint writes it waits for) SIGTERM and SIGINT alike
only set an event: the loop finishes its step, checkpoints and then raises :class:`Terminated` itself.
Ctrl-C reaches every process of a terminal's job; a SIGTERM reaches one, so a process that started others
passes it on with :func:`stop_descendants`, having first called :func:`adopt_orphans`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)

EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a process it ended

T = TypeVar("T")


# What a training loop takes as a request to stop after its step: a pod's SIGTERM, a terminal's Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM, or SIGINT where it was deferred)."""

    def __init__(self, *args: object, signal_name: str = "SIGTERM") -> None:
        super().__init__(*args)
        self.signal_name = signal_name


class Stop(threading.Event):
    """Set by the first stop signal received; ``signal_name`` names it."""

    signal_name = "SIGTERM"

    def take(self, signum: int, frame: object) -> None:
        if not self.is_set():
            self.signal_name = signal.Signals(signum).name
        self.set()


def _raise(signum: int, frame: object) -> None:
    raise Terminated()


def install() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (a no-op elsewhere, where Python cannot)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


@contextmanager
def deferred() -> Iterator[Stop]:
    """An event that SIGTERM and SIGINT set instead of raising, for code that stops at a point of its choosing.

    SIGINT too: Ctrl-C in a terminal reaches every process of the job, kfp.local's task processes included,
    and a training task owes it the same finished step and checkpoint as a SIGTERM."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {signum: signal.signal(signum, stop.take) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop_until_quiet(
    running: Callable[[], Collection[T]], stop: Callable[[T], bool], timeout_s: float, quiet_s: float = 1.0
) -> list[T]:
    """``stop`` each thing ``running`` lists, once (again at each look while it returns False: nothing in it
    to stop yet), and the ones that appear meanwhile too, until none has been running for ``quiet_s`` or
    ``timeout_s`` has passed; returns those still running then.

    The quiet time is for threads that start new ones as the stopped ones end (kfp.local's)."""
    stopped: set[T] = set()
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while True:
        now_running = list(running())
        for item in now_running:
            if item not in stopped and stop(item):
                stopped.add(item)
        now = time.monotonic()
        if now_running:
            quiet_since = now
        if now - quiet_since >= quiet_s or now >= deadline:
            return now_running
        time.sleep(0.05)


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def adopt_orphans() -> None:
    """Make this process the parent of its descendants' orphans (Linux; elsewhere a no-op).

    kfp.local starts each task as ``sh -ec '...; python3 -m ...'``: a SIGTERM ends the shell at once, and a
    Python it forked after :func:`stop_descendants` last looked would pass to init, out of reach, and run on
    after the run has ended. Adopted, it stays a descendant and is found and stopped with the rest."""
    if sys.platform != "linux":
        return
    import ctypes  # here: every training task imports this module

    try:
        failed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0
    except (OSError, AttributeError):  # no C library to ask (a static Python)
        failed = True
    if failed:
        logger.warning("cannot adopt orphaned task processes (prctl): a stopped run may leave one running")


def stop_descendants(of: int, timeout_s: float, quiet_s: float = 1.0) -> list[int]:
    """Send SIGTERM to every process ``of`` started, directly or not, and wait up to ``timeout_s`` for them
    to end (a training step checkpoints first); see :func:`stop_until_quiet`. ``of`` must have called
    :func:`adopt_orphans` before starting any, or those a stopped one starts as it ends escape. Linux only (it
    reads /proc); elsewhere it finds none."""
    seen: set[int] = set()

    def running() -> list[int]:
        # Once seen, a process is waited for even after its parent has ended and it has another one.
        seen.update(_descendants(of))
        return [pid for pid in seen if _state(pid) not in (None, "Z")]

    def terminate(pid: int) -> bool:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        return True

    return stop_until_quiet(running, terminate, timeout_s, quiet_s)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after the name, which may hold anything
        except OSError:  # it ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _state(pid: int) -> str | None:
    """The process's state letter (Z: ended, not yet reaped by its parent), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None
