"""runners/log.py's TaskLogs, the stand-in for sys.stdout while kfp.local runs, as the stop handler uses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The main thread writes a task's line (kfp.local runs the DAG's own tasks there) and SIGTERM arrives while
# TaskLogs holds its lock; the handler, like pipeline.py's, mutes and closes the logs.
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
    logs.mute()
    logs.close()
    os._exit(143)

signal.signal(signal.SIGTERM, stop)
logs.write("a task's line\\n")
"""


def test_a_signal_that_arrives_while_the_main_thread_writes_a_line_is_handled(tmp_path: Path):
    # A guard against the hang this is about (a lock taken twice by one thread), not a speed check.
    ended = subprocess.run([sys.executable, "-c", _SIGNALLED_MID_WRITE, str(tmp_path)], cwd=REPO, timeout=120)
    assert ended.returncode == 143
