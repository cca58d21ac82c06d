"""SIGTERM, which Kubernetes sends a pod before it kills it, taken like Ctrl-C (SIGINT).

Outside training it raises :class:`Terminated`, a ``KeyboardInterrupt``, so every clean-up path that
Ctrl-C takes (aborted multipart uploads, removed temporary files, the CLI's non-zero exit) serves it too.
Inside :func:`deferred` (the training loop) it only sets an event: the loop finishes its step, checkpoints
and then raises :class:`Terminated` itself. Ctrl-C reaches every process of a terminal's job; a SIGTERM
reaches one, so a process that started others passes it on with :func:`stop_descendants`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a process it ended


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM)."""


def _raise(signum: int, frame: object) -> None:
    raise Terminated()


def install() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (a no-op elsewhere, where Python cannot)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)


@contextmanager
def deferred() -> Iterator[threading.Event]:
    """An event that SIGTERM sets instead of raising, for code that stops at a point of its choosing."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop_descendants(of: int, timeout_s: float, quiet_s: float = 1.0) -> list[int]:
    """Send SIGTERM to every process ``of`` started, directly or not, and wait up to ``timeout_s`` for them
    to end (a training step checkpoints first); returns those still running then.

    Processes started meanwhile get SIGTERM too, and it returns only after ``quiet_s`` with none: the
    threads that started the first ones may start others as those end. Linux only (it reads /proc);
    elsewhere it finds none."""
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while True:
        # Signalled ones too: one whose parent ended has another parent now, but still has to end.
        running = [pid for pid in {*_descendants(of), *signalled} if _state(pid) not in (None, "Z")]
        for pid in set(running) - signalled:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            signalled.add(pid)
        now = time.monotonic()
        if running:
            quiet_since = now
        if now - quiet_since >= quiet_s or now >= deadline:
            return running
        time.sleep(0.05)


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
