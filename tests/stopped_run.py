"""A local demo run stopped by SIGTERM while two sources train and a third waits: what both runners must do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import processes

REPO = Path(__file__).resolve().parents[1]
TRAINING = ("imagenet", "moco-v2")  # two train at once
WAITING = "chexpert"  # waits for a free slot, and must never start
# Never reached: enough that neither training ends before the other has started, however late its start.
EPOCHS = 20
# A guard against a hung run, not a speed check (an hour: a loaded machine runs it many times slower).
_LIMIT_S = 3600


def stop_in_training(out: Path, *args: str, tasks: Callable[[int], list]) -> list:
    """Run the demo into ``out``, SIGTERM it once both trainings ended their first epoch, check how it ended;
    returns what ``tasks`` (given the run's pid) listed as running at the signal."""
    demo = ["--demo", "--sources", ",".join((*TRAINING, WAITING)), "--per-class", "60", "--epochs", str(EPOCHS)]
    temp = out.with_name(f"{out.name}-tmp")  # the run's TMPDIR: a stopped run leaves nothing there
    temp.mkdir()
    run = subprocess.Popen(
        [sys.executable, "pipeline.py", "run", *demo, *args, "--output", str(out)],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Both trainings under way, their SIGTERM handling in place: one container can start well after the other.
        waiting = {f"train {source} " for source in TRAINING}
        for line in run.stdout:  # ends early if the run does
            waiting -= {task for task in waiting if task in line and f" epoch 1/{EPOCHS}" in line}
            if not waiting:
                break
        running = tasks(run.pid)
        assert running, "no task was running"
        run.send_signal(signal.SIGTERM)
        stderr = run.communicate(timeout=_LIMIT_S)[1]
    finally:
        run.kill()
        run.wait()
    # Every process the run started was started by now: one still running was lost when the run ended.
    assert not processes.killed(processes.naming(str(out))), "a task outlived the run"

    assert run.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == f"pipeline.py: stopped by SIGTERM; the tasks' logs: {out / 'logs'}"
    (run,) = (out / "store" / "runs").iterdir()
    trainings = out / "store" / "trainings"  # checkpoints are the training's, the next run resumes them
    for source in TRAINING:
        assert list((trainings / source).glob("*/checkpoints/epoch-*.pt")), source
        log = (out / "logs" / f"train-{source}.log").read_text()
        assert f"{source}: stopped by SIGTERM after epoch" in log
    assert not (run / WAITING).exists() and not (trainings / WAITING).exists()
    assert sorted(p.name for p in (out / "logs").glob("train*.log")) == sorted(f"train-{s}.log" for s in TRAINING)
    assert not (out / "store" / "models").exists()
    left = list(temp.iterdir())
    assert not left, left
    return running
