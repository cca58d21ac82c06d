"""runners/log.py's TaskLogs, the stand-in for sys.stdout while kfp.local runs, as the stop handler uses it."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

from runners.log import TaskLogs

REPO = Path(__file__).resolve().parents[1]

# The main thread writes a task's line (kfp.local runs the DAG's own tasks there) and SIGTERM arrives while
# TaskLogs holds its lock; the handler, like pipeline.py's, takes the logs to stopping and closes them.
_SIGNALLED_MID_WRITE = """
import io, os, signal, sys
from pathlib import Path
from runners.log import TaskLogs

class Console(io.StringIO):
    def write(self, text):
        os.kill(os.getpid(), signal.SIGTERM)  # handled before this returns: inside TaskLogs.write
        return super().write(text)

logs = TaskLogs(Path(sys.argv[1]), Console(), set(), verbose=True)

def stop(signum, frame):
    logs.stopping()
    logs.close()
    os._exit(143)

signal.signal(signal.SIGTERM, stop)
logs.write("a task's line\\n")
"""


def test_a_signal_that_arrives_while_the_main_thread_writes_a_line_is_handled(tmp_path: Path):
    # A guard against the hang this is about (a lock taken twice by one thread), not a speed check.
    ended = subprocess.run([sys.executable, "-c", _SIGNALLED_MID_WRITE, str(tmp_path)], cwd=REPO, timeout=120)
    assert ended.returncode == 143


def test_once_stopping_a_thread_announcing_a_task_is_held_there_and_other_lines_are_still_logged(tmp_path: Path):
    """kfp.local logs this line before it starts the task; its worker threads start waiting tasks as slots free."""
    logs = TaskLogs(tmp_path, io.StringIO(), per_source={"train"})
    logs.stopping()
    announcing, returned = threading.Event(), threading.Event()

    def announce() -> None:
        announcing.set()
        logs.write("12:59:02.217 - INFO - Executing task \x1b[96m'train'\x1b[0m\n")
        returned.set()

    threading.Thread(target=announce, daemon=True).start()  # held until the test process ends
    announcing.wait()
    logs.write("a stopped task's last line\n")
    assert not returned.wait(timeout=1)
    logs.close()
    assert (tmp_path / "pipeline.log").read_text() == "a stopped task's last line\n"
