"""What `pipeline.py run` shows while kfp.local runs the pipeline: a line per task event on the terminal, and
each task's whole log in a file of its own (``logs/TASK[-SOURCE].log`` in the run's folder).

kfp.local writes everything, its own lines about each task and the task's streamed output, to ``sys.stdout``,
from the thread that runs that task; two tasks may run at once. :class:`TaskLogs` stands in for
``sys.stdout`` during the run and sends each thread's lines to the log of the task that thread runs; the
pipeline's own lines go to ``logs/pipeline.log``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK_START = re.compile(r" - INFO - Executing task '(?P<task>[^']+)'$")
TASK_END = re.compile(r" - [A-Z]+ - Task '(?P<task>[^']+)' finished with status (?P<status>[A-Z]+)")
# kfp.local closes each task's block with a horizontal rule of dashes (indented, when its print swap lingers).
RULE = re.compile(r"^\s*-{20,}$")
# A per-source task names its source in its executor input: train as a parameter, evaluate in its model's
# metadata.
SOURCE = re.compile(r'"source": "(?P<source>[^"]+)"')
# cxrtl.train's line at the end of each epoch: "SOURCE epoch 2/3: train loss ..., val acc ... (... img/s)".
EPOCH = re.compile(r"\]: \S+ (?P<epoch>epoch \d+/\d+: .*)$")
TRACEBACK = "Traceback (most recent call last):"
# A traceback's last line: the exception's class, qualified by its module, and its message.
EXCEPTION_LINE = re.compile(r"\s*(?P<module>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\.(?P<name>[A-Za-z_]\w*): (?P<message>.+)")


@dataclass
class _Task:
    name: str
    per_source: bool
    started: float = field(default_factory=time.monotonic)
    source: str | None = None
    lines: list[str] = field(default_factory=list)  # held until the log's name is known
    file: TextIO | None = None
    path: Path | None = None
    status: str | None = None
    failed: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} {self.source}" if self.source else self.name


class TaskLogs(io.TextIOBase):
    """A stand-in for ``sys.stdout`` while kfp.local runs: task logs to files, task events to ``console``.

    ``per_source`` names the tasks that run once per weight source (their logs are TASK-SOURCE.log).
    With ``verbose`` the console gets every line, as kfp.local wrote it, instead of the events.
    """

    def __init__(self, folder: Path, console: TextIO, per_source: set[str], verbose: bool = False) -> None:
        super().__init__()
        self.folder = folder
        self.console = console
        self.per_source = per_source
        self.verbose = verbose
        self.tasks: list[_Task] = []
        self._current: dict[int, _Task] = {}
        self._partial: dict[int, str] = {}
        # Re-entrant: the stop handler takes it in the main thread, which a signal may interrupt inside write().
        self._lock = threading.RLock()
        self._muted = False
        folder.mkdir(parents=True, exist_ok=True)
        self._pipeline_log = (folder / "pipeline.log").open("w")

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if self._muted and any(TASK_START.search(ANSI.sub("", line)) for line in text.split("\n")):
            threading.Event().wait()  # see stopping(): never returns, the process ends first
        thread = threading.get_ident()
        with self._lock:
            if self.verbose and not self._muted:
                self.console.write(text)
            *lines, self._partial[thread] = (self._partial.get(thread, "") + text).split("\n")
            for line in lines:
                self._line(thread, line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.console.flush()

    def close(self) -> None:
        with self._lock:
            for thread, rest in self._partial.items():
                if rest:
                    self._line(thread, rest)
            self._partial.clear()
            for task in self.tasks:
                self._name_log(task)
                task.file.close()
            self._pipeline_log.close()
        super().close()

    def stopping(self) -> None:
        """The run is stopping: no more task events or lines on the console (its tasks failing one by one),
        the logs still get everything, and no task starts. kfp.local announces each task here before it starts
        it, and its worker threads go on starting the waiting ones as slots free: a thread that announces one
        now waits in write() until the process ends."""
        with self._lock:
            self._muted = True

    def failed(self) -> list[_Task]:
        """Tasks that ended in failure, or whose log holds a traceback (kfp.local's DockerRunner can report
        a failed container as a success)."""
        return [task for task in self.tasks if task.status == "FAILURE" or task.failed]

    def _line(self, thread: int, raw: str) -> None:
        line = ANSI.sub("", raw)
        start = TASK_START.search(line)
        if start:
            task = _Task(start.group("task"), start.group("task") in self.per_source)
            self.tasks.append(task)
            self._current[thread] = task
            if not task.per_source:
                self._name_log(task)
                self._event(task, "started")
        task = self._current.get(thread)
        if task is None:
            self._pipeline_log.write(line + "\n")
            return
        self._task_line(task, line)
        if RULE.match(line):
            del self._current[thread]

    def _task_line(self, task: _Task, line: str) -> None:
        if task.file is None:
            task.lines.append(line)
            source = SOURCE.search(line) if task.per_source else None
            if source:
                task.source = source.group("source")
                self._name_log(task)
                self._event(task, "started")
        else:
            task.file.write(line + "\n")
        task.failed = task.failed or TRACEBACK in line
        epoch = EPOCH.search(line)
        end = TASK_END.search(line)
        if epoch and task.file is not None:
            self._event(task, epoch.group("epoch"))
        elif end:
            task.status = end.group("status")
            self._name_log(task)
            elapsed = f"{time.monotonic() - task.started:.1f} s"
            failed = task.status == "FAILURE" or task.failed
            self._event(task, f"FAILED after {elapsed}" if failed else f"done in {elapsed}")

    def _name_log(self, task: _Task) -> None:
        """Open the task's log file, now that its name is known, and write what was held for it."""
        if task.file is not None:
            return
        stem = "-".join(filter(None, (task.name, task.source)))
        task.path = self.folder / f"{stem}.log"
        taken = {t.path for t in self.tasks if t is not task}
        number = 2
        while task.path in taken:  # a task run twice (no source found): keep both logs
            task.path = self.folder / f"{stem}-{number}.log"
            number += 1
        task.file = task.path.open("w")
        task.file.writelines(line + "\n" for line in task.lines)
        task.lines.clear()

    def _event(self, task: _Task, what: str) -> None:
        if not (self.verbose or self._muted):
            self.console.write(f"{time.strftime('%H:%M:%S')}  {task.label:<40} {what}\n")
            self.console.flush()


@contextlib.contextmanager
def root_logging_to(stream: TextIO) -> Iterator[None]:
    """INFO and above of the root logger to ``stream`` while the block runs.

    kfp.local swaps the root logger's handlers and level for each task and puts back what it found on the
    way out; two tasks at once interleave those swaps, so one task can log its end through the handlers and
    level from before the run. With this, those are ``stream`` at INFO too, and no task line is lost.
    """
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s", "%H:%M:%S"))
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers = handlers
        root.setLevel(level)


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` lines of a log."""
    with path.open() as f:
        return f.read().splitlines()[-lines:]


def task_error(path: Path) -> str | None:
    """The message of the CxrtlError a task failed with, from the last exception line of its log; None when
    it failed otherwise (an unexpected exception, whose traceback a person needs: it stays in the log)."""
    from cxrtl.errors import CxrtlError

    last = None
    with path.open(errors="replace") as f:
        for line in f:
            last = EXCEPTION_LINE.fullmatch(line.rstrip("\n")) or last
    if last is None or last["module"].split(".")[0] != "cxrtl":
        return None
    try:
        raised = getattr(importlib.import_module(last["module"]), last["name"])
    except (ImportError, AttributeError):
        return None
    return last["message"] if isinstance(raised, type) and issubclass(raised, CxrtlError) else None
