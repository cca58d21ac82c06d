"""`pipeline.py run`: the pipeline on this machine with kfp.local, each task a process here or, with
``--runner docker``, a container of its component's image (runners/docker.py). The run's inputs (the demo's
data and stand-in weights), a log per task and a line per task event (runners/log.py), Ctrl-C and SIGTERM,
and the ending: the report, or why there is none.

The pipeline comes from pipeline.py as an argument, as runners/kfp_api.py gets its compile function.
"""

import argparse
import builtins
import contextlib
import dataclasses
import fcntl
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrtl import signals
from cxrtl.cli.options import add_setting_options, given_settings
from cxrtl.demo_data import DEMO_PER_CLASS
from cxrtl.errors import CxrtlError
from cxrtl.settings import RunSettings, option, settings_named
from runners import kfp_adapter
from runners.log import ANSI, TaskLogs, root_logging_to, tail, task_error

# How long a terminated local run waits for its task processes: a train step finishes its step and
# checkpoints (a few seconds on a CPU, a full-size checkpoint included).
TASK_STOP_S = 60


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--demo",
        action="store_true",
        help="synthetic data in the Kaggle layout, stand-in weights, 64 px images, 3 epochs",
    )
    p.add_argument(
        "--dataset-source",
        help="'kaggle', s3://BUCKET/KEY of a zip put in the store, a .zip or a folder (required unless --demo)",
    )
    p.add_argument(
        "--store",
        help="store URL (default: $CXRTL_STORE, else ~/.cache/cxrtl/store, as for cxrtl; "
        "with --demo: a store folder inside --output)",
    )
    # Each option is None when not given: local_arguments then takes the demo's value or the default.
    add_setting_options(p, check=False)
    p.add_argument("--per-class", type=int, default=DEMO_PER_CLASS, help="demo images per class (default %(default)s)")
    p.add_argument("--output", type=Path, help="folder for everything the run writes (default: runs/NAME-TIME)")
    p.add_argument(
        "--verbose", action="store_true", help="show every task's whole log as it runs (default: a line per task event)"
    )
    p.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="subprocess (default): each task a process here; docker: each task in its component's image, "
        "without network, through a local Docker engine (build the images first: make images-offline)",
    )


def local_arguments(args: argparse.Namespace) -> dict:
    """The pipeline's arguments for a local run, checked before anything is written."""
    if not args.demo and not args.dataset_source:
        raise CxrtlError("--dataset-source is required without --demo ('kaggle', a .zip or a folder)")
    remote = args.dataset_source == "kaggle" or (args.dataset_source or "").startswith("s3://")
    if args.dataset_source and not remote and not Path(args.dataset_source).exists():
        raise CxrtlError(f"--dataset-source {args.dataset_source}: no such file or folder")
    from cxrtl.demo_data import per_class_problem

    problem = per_class_problem(args.per_class)
    if problem:
        raise CxrtlError(f"--per-class {problem}")
    if args.output and args.output.exists() and not args.output.is_dir():
        raise CxrtlError(f"--output {args.output} is a file; it names the folder the run writes into")
    defaults = RunSettings.demo() if args.demo else RunSettings()
    with settings_named(option):
        settings = dataclasses.replace(defaults, **given_settings(args))
    return {"dataset_source": args.dataset_source, **settings.to_pipeline()}


# The tasks that run once per weight source, inside the ParallelFor: their logs are named TASK-SOURCE.log.
PER_SOURCE_TASKS = {"train", "evaluate"}


def run(args: argparse.Namespace, pipeline: Callable[[], Callable[..., Any]]) -> None:
    """Run ``pipeline()``, the pipeline to run (made inside the logged run), as ``args`` say."""
    from kfp import local

    from cxrtl.store import default_store_url, open_store
    from runners import docker as containers

    started = time.time()
    if not args.verbose:
        # The progress is the task events; cxrtl's own INFO lines (demo inputs, stand-ins) are --verbose's.
        logging.getLogger().setLevel(logging.WARNING)
    arguments = local_arguments(args)
    out = args.output.resolve() if args.output else _new_run_folder(args.demo)
    # The demo's stand-in weights stay in a store of its own; any other run uses cxrtl's store, where the weights
    # fetched or put once serve every run.
    arguments["store"] = args.store or (str(out / "store") if args.demo else default_store_url())
    if args.runner == "docker":
        containers.check_docker(arguments["store"], args.dataset_source)
    with _removed_if_left_empty(out), _run_folder_locked(out), _task_temp_folder() as task_temp:
        store = open_store(arguments["store"])
        if args.demo and not arguments["dataset_source"]:
            demo_zip = _demo_inputs(out, store, arguments["sources"], args.per_class, arguments["seed"])
            arguments["dataset_source"] = str(demo_zip)

        # kfp.local runs two tasks at once: one thread each keeps them from fighting over the cores.
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
        pipeline_root = out / "pipeline-root"
        if args.runner == "docker":
            runner = containers.runner(out, pipeline_root, arguments)
        else:
            runner = local.SubprocessRunner(use_venv=False)
        # Its workspace in the tasks' folder: kfp.local removes it only when the pipeline returns, not when a
        # signal ends the run.
        workspace = task_temp / "kfp-workspace"
        workspace.mkdir()
        local.init(runner=runner, pipeline_root=str(pipeline_root), workspace_root=str(workspace))
        earlier = kfp_adapter.local_run_folders(pipeline_root)
        failed = None
        try:
            _run_logged(pipeline, arguments, out / "logs", args.verbose, args.runner == "docker", task_temp)
        except CxrtlError as exc:
            failed = exc
        # This run's own outputs, never the store's latest: another run may share the store and end meanwhile.
        run_folders = kfp_adapter.local_run_folders(pipeline_root) - earlier
    # A run whose trainings failed in part still reports the others, then fails.
    reports = _print_outcome(run_folders.pop()) if run_folders else None
    if reports or not failed:
        _print_ending(out, arguments["store"], reports, started)
    if failed:
        raise failed


def _print_outcome(run_folder: Path) -> str | None:
    """The run's report (the report task's table, as stored) or why it did not retrain; the URL of the run's report
    folder in the store, ending in /."""
    from cxrtl.report import REPORT_FILES

    summary = kfp_adapter.local_task_parameters(run_folder, "report")
    if summary is None:
        check = kfp_adapter.local_task_parameters(run_folder, "check-changes")
        if check is not None and not check["Output"]:
            reason = kfp_adapter.local_task_artifact(run_folder, "check-changes", "reason").read_text().strip()
            print(f"Nothing changed: {reason} (--force retrains).")
        return None
    print((kfp_adapter.local_task_artifact(run_folder, "report", "table") / REPORT_FILES["txt"]).read_text())
    return json.loads(summary["Output"])["report"].removesuffix(REPORT_FILES["html"])


def _new_run_folder(demo: bool) -> Path:
    """runs/NAME-TIME, made here: two runs started in the same second each get their own (…-2)."""
    base = Path("runs") / time.strftime(f"{'demo' if demo else 'local'}-%Y%m%d-%H%M%S")
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        folder = base if n == 1 else base.with_name(f"{base.name}-{n}")
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            return folder.resolve()
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _run_folder_locked(out: Path):
    """One run at a time in a run folder: its pipeline root tells this run's outputs from the ones before."""
    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CxrtlError(f"--output {out}: another run is using this folder; give another") from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _task_temp_folder():
    """TMPDIR for the run's tasks, removed after the run: each kfp.local task writes its component's code into a
    folder of its own there (``mktemp -d``) and leaves it."""
    folder = Path(tempfile.mkdtemp(prefix="cxrtl-tasks-"))
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = previous
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _removed_if_left_empty(out: Path):
    """Make ``out``; a failure that leaves it (or the store folder inside it) empty removes what was made."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in (out / "store", out):
            if created and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _run_logged(
    pipeline: Callable[[], Callable[..., Any]],
    arguments: dict,
    logs: Path,
    verbose: bool,
    docker: bool,
    task_temp: Path,
) -> None:
    """Run the pipeline with kfp.local, its output routed to a log per task and a line per task event; ``docker``:
    each task in a container (runners/docker.py, which keeps its bookkeeping in the run's folder)."""
    from runners import docker as containers

    docker_run = logs.parent if docker else None
    task_logs = TaskLogs(logs, sys.stdout, PER_SOURCE_TASKS, verbose=verbose)
    original_print = builtins.print
    try:
        with contextlib.redirect_stdout(task_logs), root_logging_to(task_logs), warnings.catch_warnings():
            if not verbose:
                # kfp.local's notices, one per task: cluster settings a local run cannot apply (requests,
                # retries), and our images' packages used from this environment by the subprocess runner.
                warnings.filterwarnings("ignore", message=r"Task '.*': settings \[", category=UserWarning)
                warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
            with contextlib.ExitStack() as stack:
                ends = stack.enter_context(containers.ContainerEvents(docker_run, "die")) if docker_run else None
                try:
                    with _stopped_by_signals(task_logs, docker_run, task_temp):
                        pipeline()(**arguments)
                finally:
                    if ends is not None:
                        containers.check_exits(ends)
    except (RuntimeError, CxrtlError) as exc:  # RuntimeError: kfp.local's "a task failed"
        task_logs.close()
        # A task's own one-line error comes last; the end of its log only where it failed unexpectedly.
        errors = []
        for task in task_logs.failed():
            error = task_error(task.path)
            if error is None:
                print(f"\n{task.label} failed. The end of its log ({task.path}):", file=sys.stderr)
                print("\n".join(f"    {line}" for line in tail(task.path)), file=sys.stderr)
            else:
                print(f"{task.label} failed; its log: {task.path}", file=sys.stderr)
                errors.append(f"{task.label}: {error}")
        if errors:
            raise CxrtlError("; ".join(errors)) from None
        message = ANSI.sub("", str(exc))
        raise CxrtlError(message if isinstance(exc, CxrtlError) else f"local run failed: {message}") from None
    finally:
        # kfp.local indents task logs by swapping builtins.print from several threads and can leave it swapped.
        builtins.print = original_print
        if not task_logs.closed:
            task_logs.close()


@contextlib.contextmanager
def _stopped_by_signals(task_logs: Any, docker_run: Path | None, task_temp: Path):
    """While kfp.local runs: SIGTERM and Ctrl-C end the run's tasks (``docker_run``: its task containers'
    processes; else the task processes), then this process.

    kfp.local's worker threads are joined, never stopped: whatever the main thread does, they go on starting
    the run's remaining tasks. So those threads are held as they announce a task (``TaskLogs.stopping``), the
    signal is passed on to every task (a train step finishes its step and checkpoints), and the process ends
    once none is left, without the tasks' TMPDIR (``task_temp``) unless one still runs."""
    from runners import docker as containers

    def stop(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        try:
            task_logs.stopping()
            print(f"pipeline.py: {name}: stopping the run's tasks (waiting up to {TASK_STOP_S} s)", file=sys.stderr)
            if docker_run:
                running = containers.stop_tasks(docker_run, TASK_STOP_S)
            else:
                running = [str(pid) for pid in signals.stop_descendants(os.getpid(), TASK_STOP_S)]
            task_logs.close()
            if not running:
                shutil.rmtree(task_temp, ignore_errors=True)
            left = f"; tasks still running: {' '.join(running)}" if running else ""
            print(
                f"pipeline.py: stopped by {name}{left}; the tasks' logs: {task_logs.folder}",
                file=sys.stderr,
                flush=True,
            )
        finally:
            # The only way past kfp.local's worker threads; also where the above failed (the signal came inside
            # a write to a stalled terminal, whose buffer then refuses a flush).
            os._exit(128 + signum)

    if not docker_run:
        signals.adopt_orphans()
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _print_ending(out: Path, store: str, reports: str | None, started: float) -> None:
    """Where to look (``reports``: the URL of the run's report folder, ending in /), how long it took, and how
    much disk the run's folder takes."""
    from cxrtl.report import REPORT_FILES

    # Each file once: the store's copy of a model is a hard link to the pipeline's artifact.
    files = {
        (s.st_dev, s.st_ino): s.st_size
        for p in out.rglob("*")
        if p.is_file() and not p.is_symlink()
        for s in [p.stat()]
    }
    size = sum(files.values())
    minutes, seconds = divmod(round(time.time() - started), 60)
    print()
    if reports:
        print(f"Report:  {reports}{REPORT_FILES['html']}")
        print(f"         {reports}{REPORT_FILES['md']}")
    print(f"Store:   {store}")
    print(f"Logs:    {out / 'logs'}")
    print(f"Outputs: {out} ({size / 1e9:.2f} GB); took {minutes} min {seconds} s")


def _demo_inputs(out: Path, store, sources: list[str], per_class: int, seed: int) -> Path:
    """Synthetic data in the Kaggle layout, and a stand-in checkpoint per source in the store."""
    from cxrtl.demo_data import write_demo_dataset
    from cxrtl.weights import put_weights, write_stand_in

    archive = write_demo_dataset(out / "demo-data", per_class=per_class, seed=seed)
    with tempfile.TemporaryDirectory(prefix="cxrtl-stand-in-") as tmp:
        for source in sources:
            path = write_stand_in(source, Path(tmp) / f"{source}.pth", seed=seed)
            put_weights(store, source, path, stand_in=True)
            path.unlink()
    return archive
