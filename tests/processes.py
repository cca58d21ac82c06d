"""Processes found by their command line: once what started them has ended, any still there was lost by it."""

from __future__ import annotations

import os
import signal
from contextlib import suppress
from pathlib import Path


def naming(text: str, but: int | None = None) -> list[int]:
    """The live processes, other than ``but``, whose command line holds ``text`` (a zombie's is empty)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with suppress(OSError):  # it ended meanwhile
            if text.encode() in cmdline.read_bytes() and int(cmdline.parent.name) != but:
                found.append(int(cmdline.parent.name))
    return found


def killed(pids: list[int]) -> list[int]:
    """``pids``, each sent SIGKILL, so that a failing test leaves nothing running."""
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
