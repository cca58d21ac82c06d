"""SIGTERM passed on to a process's descendants: they get to end gracefully, and the caller waits for them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import processes

from cxrtl import signals

# Writes ``ready`` once SIGTERM is handled, and on SIGTERM takes a moment (as a checkpoint would) before
# it writes ``stopped`` and exits.
_GRACEFUL = """
import signal, sys, time
from pathlib import Path
def stop(signum, frame):
    time.sleep(1)
    Path(sys.argv[1], "stopped").touch()
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[1], "ready").touch()
time.sleep(600)
"""

# On SIGTERM it starts its argv as a process and ends at once, as kfp.local's ``sh -ec`` ends having just
# forked its task's Python, unseen. Writes ``armed`` once SIGTERM is handled.
_STARTS_AS_IT_ENDS = """
import os, signal, subprocess, sys, time
from pathlib import Path
def stop(signum, frame):
    subprocess.Popen(sys.argv[1:])
    os._exit(143)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[-1], "armed").touch()
time.sleep(600)
"""

# The process that stops its descendants, as pipeline.py does: adopts orphans, starts its argv, then stays.
_ADOPTING_ROOT = """
import subprocess, sys, time
from cxrtl import signals
signals.adopt_orphans()
subprocess.run(sys.argv[1:])
time.sleep(600)
"""


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60  # a guard against a hang, not a speed check
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_every_descendant_is_stopped_and_waited_for_and_the_root_left_alone(tmp_path):
    # The root (like kfp.local's ``sh -ec``) starts a graceful process and a plain one, and waits for both.
    script = tmp_path / "graceful.py"
    script.write_text(_GRACEFUL)
    root = subprocess.Popen(["sh", "-c", f'"{sys.executable}" "{script}" "{tmp_path}" & sleep 600 & wait'])
    try:
        # Both started (sh forks the sleep after the Python process, which a loaded machine may run first).
        _wait_until(lambda: (tmp_path / "ready").exists(), "the graceful process never became ready")
        _wait_until(lambda: len(signals._descendants(root.pid)) == 2, "not both descendants started")
        descendants = signals._descendants(root.pid)

        assert signals.stop_descendants(root.pid, timeout_s=30) == []
        assert (tmp_path / "stopped").exists()  # it was waited for through its slow, graceful exit
        assert all(signals._state(pid) in (None, "Z") for pid in descendants)
        assert root.wait(timeout=10) == 0  # left alone: it ended on its own once its children had
    finally:
        root.kill()
        root.wait()


def test_a_descendant_that_outlives_the_wait_is_named(tmp_path):
    root = subprocess.Popen(["sh", "-c", "sh -c 'trap \"\" TERM; sleep 600' & wait"])
    try:
        _wait_until(lambda: len(signals._descendants(root.pid)) == 2, "not the inner sh and its sleep")
        left = signals.stop_descendants(root.pid, timeout_s=0.5)
        assert left and set(left) <= set(signals._descendants(root.pid))
    finally:
        processes.killed(signals._descendants(root.pid))
        root.kill()
        root.wait()


def test_a_process_started_by_one_ending_on_sigterm_is_stopped_too(tmp_path):
    (tmp_path / "starts.py").write_text(_STARTS_AS_IT_ENDS)
    (tmp_path / "graceful.py").write_text(_GRACEFUL)
    graceful = [sys.executable, str(tmp_path / "graceful.py")]
    root = subprocess.Popen(
        [sys.executable, "-c", _ADOPTING_ROOT, sys.executable, str(tmp_path / "starts.py"), *graceful, str(tmp_path)]
    )
    try:
        _wait_until(lambda: (tmp_path / "armed").exists(), "the starting process never handled SIGTERM")
        assert signals.stop_descendants(root.pid, timeout_s=30) == []
        assert not processes.killed(processes.naming(str(tmp_path), but=root.pid)), "one escaped, still running"
    finally:
        root.kill()
        root.wait()


def test_a_thing_with_nothing_to_stop_yet_is_tried_again_at_each_look_until_it_takes():
    # A task container whose sh has not started the step: kill -1 finds nothing there to signal.
    looks = iter([["task"]] * 3)
    tries: list[str] = []

    def stop(item: str) -> bool:
        tries.append(item)
        return len(tries) > 1

    assert signals.stop_until_quiet(lambda: next(looks, []), stop, timeout_s=30, quiet_s=0.1) == []
    assert tries == ["task", "task"]
