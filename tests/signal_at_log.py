"""``python tests/signal_at_log.py SIGNAL MARKER ARGS...``: ``cxrtl ARGS...`` that sends itself SIGNAL (TERM, INT,
KILL; group:INT to its whole process group) the first time one of cxrtl's log records contains MARKER.

A stop at an exact point of the run on any machine: a test that watches from outside (a file appearing, a line
read from a pipe) signals whenever the machine lets it, and a loaded one lets the run go on meanwhile, past
the point the test meant (a next checkpoint written, the last step done). A signal sent here is still the real
thing, delivered by the kernel to the real process with its own handlers. :func:`sending` does the same within
the test's own process."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from cxrtl.cli import main


def argv(signal_name: str, marker: str, *cxrtl_args: str, group: bool = False) -> list[str]:
    """The command line that runs ``cxrtl *cxrtl_args`` and sends it SIG``signal_name`` at ``marker``; ``group``:
    to its whole process group, as a terminal's Ctrl-C does (run it in a session of its own)."""
    return [sys.executable, str(Path(__file__)), f"group:{signal_name}" if group else signal_name, marker, *cxrtl_args]


class SignalOnce(logging.Handler):
    def __init__(self, signum: signal.Signals, marker: str, group: bool) -> None:
        super().__init__()
        self.signum, self.marker, self.group, self.sent = signum, marker, group, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.sent and self.marker in record.getMessage():
            self.sent = True
            if self.group:
                os.killpg(os.getpgid(0), self.signum)
            else:
                os.kill(os.getpid(), self.signum)


@contextlib.contextmanager
def sending(signum: signal.Signals, marker: str) -> Iterator[SignalOnce]:
    """Within this block, this process gets ``signum`` the first time one of cxrtl's log records contains
    ``marker`` (its INFO records are made meanwhile, whatever the logging set-up)."""
    logger, handler = logging.getLogger("cxrtl"), SignalOnce(signum, marker, group=False)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


if __name__ == "__main__":
    name, marker, *args = sys.argv[1:]
    group = name.startswith("group:")
    # On cxrtl's logger, not the root's: the CLI's logging.basicConfig adds its stderr handler only to a root
    # logger without handlers.
    logging.getLogger("cxrtl").addHandler(
        SignalOnce(signal.Signals[f"SIG{name.removeprefix('group:')}"], marker, group)
    )
    sys.exit(main(args))
