"""``python tests/signal_at_log.py SIGNAL MARKER ARGS...``: ``cxrtl ARGS...`` that sends itself SIGNAL (TERM, KILL)
the first time one of cxrtl's log records contains MARKER.

A stop at an exact point of the run on any machine: a test that watches from outside (a file appearing, a line
read from a pipe) signals whenever the machine lets it, and a loaded one lets the run go on meanwhile, past
the point the test meant (a next checkpoint written, the last step done). A signal sent here is still the real
thing, delivered by the kernel to the real process with its own handlers."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from cxrtl.cli import main


def argv(signal_name: str, marker: str, *cxrtl_args: str) -> list[str]:
    """The command line that runs ``cxrtl *cxrtl_args`` and sends it SIG``signal_name`` at ``marker``."""
    return [sys.executable, str(Path(__file__)), signal_name, marker, *cxrtl_args]


class _SignalOnce(logging.Handler):
    def __init__(self, signum: signal.Signals, marker: str) -> None:
        super().__init__()
        self.signum, self.marker, self.sent = signum, marker, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.sent and self.marker in record.getMessage():
            self.sent = True
            os.kill(os.getpid(), self.signum)


if __name__ == "__main__":
    name, marker, *args = sys.argv[1:]
    # On cxrtl's logger, not the root's: the CLI's logging.basicConfig adds its stderr handler only to a root
    # logger without handlers.
    logging.getLogger("cxrtl").addHandler(_SignalOnce(signal.Signals[f"SIG{name}"], marker))
    sys.exit(main(args))
