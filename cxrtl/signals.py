"""SIGTERM, which Kubernetes sends a pod before it kills it, taken like Ctrl-C (SIGINT).

Outside training it raises :class:`Terminated`, a ``KeyboardInterrupt``, so every clean-up path that
Ctrl-C takes (aborted multipart uploads, removed temporary files, the CLI's non-zero exit) serves it too.
Inside :func:`deferred` (the training loop) it only sets an event: the loop finishes its step, checkpoints
and then raises :class:`Terminated` itself.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
