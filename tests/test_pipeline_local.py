"""Real local runs of the whole pipeline through kfp.local: `python pipeline.py run --demo ...` as a subprocess.

A subprocess per run, because kfp.local keeps its configuration in module globals and `run` sets
OMP_NUM_THREADS; each run costs a few seconds of start-up on top of its tasks, nothing next to training.

One demo run trains two sources (60 images per class, 3 epochs: the smallest set-up found that learns the
demo data well past 0.9 test accuracy; at 12 per class the test split is 5 images and 2 epochs do not learn).
It is then rerun on the same store: unchanged, it must end early; with --force, it must retrain.
Each rerun test reads the store's state when it starts, so they pass in either order.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from stopped_run import stop_in_training

from cxrtl import champion, signals
from cxrtl.ingest import DATASET_DIR
from cxrtl.metrics import METRIC_NAMES
from cxrtl.report import TEXT_METRICS
from cxrtl.store import LocalStore, sha256_file

pytestmark = pytest.mark.slow  # runs the pipeline, several times

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("imagenet", "moco-v2")
DEMO = ["--demo", "--sources", ",".join(SOURCES), "--per-class", "60", "--epochs", "3"]
NOTHING_CHANGED = "Nothing changed"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
KFP_LOG_LINE = re.compile(r"\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - ")  # kfp.local's own log lines: "19:42:40.199 - INFO - ..."
TASK_EVENT = re.compile(
    r"\d\d:\d\d:\d\d  (?P<task>\S+(?: \S+)?) +(?P<event>started|done in .*|FAILED after .*|epoch .*)$"
)
# What a person reads of a run: the issue that asked for quiet runs counted about 2,900 lines before.
_MOST_LINES = 150
FAILED_TASK = re.compile(r"^(?P<task>.+) failed\. The end of its log \((?P<log>/.+\.log)\):$")
# A guard against a hung run, not a speed check: a run takes 1-2 minutes on 2 idle cores, many times that
# on a machine shared by many busy processes.
_RUN_LIMIT_S = 3600


@dataclass
class Run:
    out: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def store(self) -> Path:
        return self.out / "store"

    def pipeline_run(self) -> Path:
        """The one pipeline run folder under the run's pipeline root."""
        (folder,) = (self.out / "pipeline-root").iterdir()
        return folder

    def check(self) -> Run:
        assert self.returncode == 0, f"exit {self.returncode}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        return self


def run_pipeline(out: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """``pipeline.py run``; without --store a run uses cxrtl's default store, here one beside ``out``."""
    default_store = {"CXRTL_STORE": str(out.parent / "default-store")}
    done = subprocess.run(
        [sys.executable, "pipeline.py", "run", *args, "--output", str(out)],
        cwd=REPO,
        env={**os.environ, **default_store, **(env or {})},
        capture_output=True,
        text=True,
        timeout=_RUN_LIMIT_S,
    )
    return Run(out, done.returncode, done.stdout, done.stderr)


def last_success(store: Path) -> dict:
    return json.loads((store / "state" / "last-success.json").read_text())


def model_runs(store: Path, source: str) -> set[str]:
    return {p.name for p in (store / "models" / source).iterdir()}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_pipeline(tmp_path_factory.mktemp("demo") / "out", *DEMO).check()


@pytest.fixture(scope="module")
def run_id(demo_run: Run) -> str:
    return last_success(demo_run.store)["run_id"]


# --- the first run --------------------------------------------------------------------------------------


def _printed_report(stdout: str) -> list[str]:
    """What `run` prints after the last task event (the report task's log holds the report too)."""
    lines = stdout.splitlines()
    last_event = max(i for i, line in enumerate(lines) if TASK_EVENT.match(line))
    return lines[last_event + 1 :]


def test_demo_run_prints_the_comparison_of_both_sources(demo_run: Run):
    lines = [line.strip() for line in _printed_report(demo_run.stdout)]
    (header,) = [line for line in lines if line.startswith("source ")]
    assert header.split()[1 : 1 + len(TEXT_METRICS)] == list(TEXT_METRICS)
    for source in SOURCES:
        (row,) = [line for line in lines if line.startswith(f"{source} ")]
        values = row.split()[1 : 1 + len(TEXT_METRICS)]
        assert all(re.fullmatch(r"[01]\.\d{3}", v) for v in values), row  # three decimals, as the report
    assert any(line.endswith("<- tied for best") for line in lines)
    assert any("STAND-IN" in line for line in lines)
    assert any(re.match(r"Promotion: .* promoted to champion: there was no champion", line) for line in lines)
    assert NOTHING_CHANGED not in demo_run.stdout


def test_demo_run_ends_with_where_to_look_how_long_it_took_and_the_disk_it_used(demo_run: Run, run_id: str):
    ending = demo_run.stdout.splitlines()[-5:]
    reports = demo_run.store / "reports" / run_id
    assert ending[:4] == [
        f"Report:  {reports}/report.html",
        f"         {reports}/report.md",
        f"Store:   {demo_run.store}",
        f"Logs:    {demo_run.out / 'logs'}",
    ]
    assert re.fullmatch(rf"Outputs: {re.escape(str(demo_run.out))} \(\d+\.\d\d GB\); took \d+ min \d+ s", ending[4])
    assert (reports / "report.html").is_file() and (reports / "report.md").is_file()


def test_demo_run_prints_a_line_per_task_event_and_no_task_log(demo_run: Run):
    lines = demo_run.stdout.splitlines() + demo_run.stderr.splitlines()
    assert len(lines) < _MOST_LINES, len(lines)
    assert demo_run.stderr == ""
    assert not [line for line in lines if KFP_LOG_LINE.search(line) or "executor_input" in line.lower()]
    events = [TASK_EVENT.match(line) for line in demo_run.stdout.splitlines() if TASK_EVENT.match(line)]
    by_task: dict[str, list[str]] = {}
    for event in events:
        by_task.setdefault(event["task"], []).append(event["event"])
    tasks = ["ingest", "check-changes", "check-weights", "preprocess", "promote", "report", "run-status"]
    tasks += [f"{task} {source}" for source in SOURCES for task in ("train", "evaluate")]
    assert sorted(by_task) == sorted(tasks)
    for task, seen in by_task.items():
        assert seen[0] == "started" and seen[-1].startswith("done in "), (task, seen)
        epochs = [e for e in seen if e.startswith("epoch ")]
        if task.startswith("train "):
            assert [e.split(":")[0] for e in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"], seen
            assert all(re.search(r" acc \d\.\d{4}", e) for e in epochs), epochs
        else:
            assert not epochs


def test_demo_run_keeps_each_tasks_whole_log_in_a_file(demo_run: Run):
    logs = demo_run.out / "logs"
    names = ["pipeline", "ingest", "check-changes", "check-weights", "preprocess", "promote", "report", "run-status"]
    names += [f"{task}-{source}" for source in SOURCES for task in ("train", "evaluate")]
    assert sorted(p.name for p in logs.iterdir()) == sorted(f"{name}.log" for name in names)
    for name in names[1:]:
        text = (logs / f"{name}.log").read_text()
        task = name.split("-")[0] if name.startswith(("train-", "evaluate-")) else name
        assert f"Executing task '{task}'" in text and f"Task '{task}' finished with status SUCCESS" in text, name
    train = (logs / f"train-{SOURCES[0]}.log").read_text()
    assert '"executorInput"' in train or "executor_input" in train
    assert re.search(rf"{SOURCES[0]} epoch 3/3: train loss", train)
    assert "Running pipeline: 'cxrtl'" in (logs / "pipeline.log").read_text()


def test_the_printed_report_is_the_stored_report_verbatim(demo_run: Run, run_id: str):
    """kfp.local indents print() while a task runs by swapping builtins.print, from several threads at once;
    the swaps can interleave and leave print indented after the run, which shifts the header off its columns.
    """
    stored = (demo_run.store / "reports" / run_id / "report.txt").read_text()
    assert "\n".join(_printed_report(demo_run.stdout)).startswith(stored)


def test_demo_run_fills_the_store(demo_run: Run, run_id: str):
    store = demo_run.store
    for source in SOURCES:
        assert (store / "models" / source / run_id / "model.pt").is_file()
        # A finished source's checkpoints are deleted (no --keep-checkpoints).
        assert list((store / "runs" / run_id / source).glob("**/*.pt")) == []
        # KFP's artifact names the store's model (key and sha256) rather than holding a copy of it.
        refs = [json.loads(p.read_text()) for p in demo_run.pipeline_run().glob("*/train/model/stored.json")]
        (ref,) = [r for r in refs if r["prefix"] == f"models/{source}/{run_id}/"]
        assert ref["files"]["model.pt"]["sha256"] == sha256_file(store / "models" / source / run_id / "model.pt")
        assert len(list((store / "weights" / source).glob("*.pth"))) == 1
    for name in ("report.md", "report.html", "report.txt", "results.csv"):
        assert (store / "reports" / run_id / name).is_file()
    assert "<table>" in (store / "reports" / run_id / "report.html").read_text()
    assert (store / "datasets" / "covid19-radiography-database").is_dir()
    card = json.loads((store / champion.current(LocalStore(store)).key("card.json")).read_text())
    assert card["run_id"] == run_id
    assert card["dataset"]["version"] == last_success(store)["fingerprint"]["dataset_version"]
    assert set(card["metrics"]) == set(METRIC_NAMES)
    assert last_success(store)["fingerprint"]["settings"]["sources"] == list(SOURCES)


def test_demo_models_learn_the_demo_data(demo_run: Run, run_id: str):
    with open(demo_run.store / "reports" / run_id / "results.csv", newline="") as f:
        rows = {row["source"]: row for row in csv.DictReader(f)}
    assert set(rows) == set(SOURCES)
    # Ranking, not accuracy at 0.5: after 3 epochs of the paper recipe from random stand-ins, a source may still
    # put every image on one side of 0.5 while ranking them perfectly (seen: moco-v2, accuracy 0.49 at ROC AUC
    # 1.0: BatchNorm statistics of the fine-tuned first epoch, then frozen), which says nothing about the wiring.
    for source, row in rows.items():
        assert float(row["roc_auc"]) >= 0.95, (source, row)
        assert int(row["n"]) >= 20, row  # enough test images for 0.95 to mean something
        assert row["stand_in"] == "True"


def test_demo_run_keeps_each_tasks_outputs_in_the_pipeline_root(demo_run: Run):
    root = demo_run.pipeline_run()
    assert (root / "check-changes" / "executor_output.json").is_file()
    # The dataset, the prepared data and the models are in the store; KFP's artifacts name them (cxrtl.artifacts).
    assert json.loads((root / "ingest" / "raw" / "stored.json").read_text())["prefix"].startswith("datasets/")
    assert json.loads((root / "preprocess" / "data" / "stored.json").read_text())["prefix"].startswith("prepared/")
    assert not list(root.glob("**/*.npy")) and not list(root.glob("**/model.pt"))
    assert not list(root.glob(f"**/{DATASET_DIR}"))
    models = sorted(root.glob("*/train/model/stored.json"))
    results = sorted(root.glob("*/evaluate/results/predictions.csv"))
    assert len(models) == len(results) == len(SOURCES)
    assert (root / "promote" / "executor_output.json").is_file()
    for name in ("table", "html", "markdown"):
        assert (root / "report" / name).exists(), name


def test_verbose_shows_every_log_line_and_the_log_files_hold_them_all(tmp_path: Path):
    verbose = run_pipeline(
        tmp_path / "out", "--demo", "--sources", "imagenet", "--per-class", "12", "--epochs", "1", "--verbose"
    ).check()
    shown = [ANSI.sub("", line).strip() for line in verbose.stdout.splitlines()]
    assert sum(bool(KFP_LOG_LINE.search(line)) for line in shown) > 20 and not TASK_EVENT.match(shown[0])
    logged = {line.strip() for log in (verbose.out / "logs").glob("*.log") for line in log.read_text().splitlines()}
    # Every line kfp.local wrote while the pipeline ran is in a log file; what follows is the run's ending.
    during = shown[: max(i for i, line in enumerate(shown) if KFP_LOG_LINE.search(line)) + 1]
    assert [line for line in during if line not in logged] == []


def test_sigterm_stops_every_task_lets_training_checkpoint_and_starts_nothing_more(tmp_path: Path):
    """kfp.local's worker threads would otherwise go on: the running trains and the third source after them."""
    tasks = stop_in_training(tmp_path / "out", tasks=signals._descendants)
    assert all(signals._state(pid) in (None, "Z") for pid in tasks)


# --- reruns on the same store ---------------------------------------------------------------------------


def test_rerun_with_nothing_changed_ends_early(demo_run: Run, tmp_path: Path):
    before = last_success(demo_run.store)
    models_before = {source: model_runs(demo_run.store, source) for source in SOURCES}
    again = run_pipeline(tmp_path / "again", *DEMO, "--store", str(demo_run.store)).check()
    assert NOTHING_CHANGED in again.stdout
    assert f"since run {before['run_id']}" in again.stdout
    tasks = {p.name for p in again.pipeline_run().iterdir()}
    assert {"ingest", "check-changes"} <= tasks
    assert not list(again.pipeline_run().glob("**/train")), tasks
    assert "preprocess" not in tasks and "report" not in tasks
    assert last_success(demo_run.store) == before
    assert {source: model_runs(demo_run.store, source) for source in SOURCES} == models_before


def test_force_retrains_although_nothing_changed(demo_run: Run, tmp_path: Path):
    before = last_success(demo_run.store)["run_id"]
    forced = run_pipeline(tmp_path / "forced", *DEMO, "--store", str(demo_run.store), "--force").check()
    assert NOTHING_CHANGED not in forced.stdout
    assert re.search(r"^Promotion: ", forced.stdout, re.M)
    new_id = last_success(demo_run.store)["run_id"]
    assert new_id != before
    assert len(list(forced.pipeline_run().glob("*/train/model/stored.json"))) == len(SOURCES)
    assert "not trained again" not in "".join(p.read_text() for p in (forced.out / "logs").glob("train-*.log"))
    for source in SOURCES:
        assert {before, new_id} <= model_runs(demo_run.store, source)
        assert (demo_run.store / "models" / source / new_id / "model.pt").is_file()
    assert (demo_run.store / "reports" / new_id / "report.txt").is_file()


# --- two runs at once on one store ------------------------------------------------------------------------


def test_two_runs_at_once_on_one_store_each_print_their_own_report_and_leave_no_temp_folders(
    stand_in_store, demo_zip: Path, tmp_path: Path
):
    """Each run reads its own outputs, not the store's latest (the other run may finish first), and takes the
    per-task folders kfp.local's tasks make under TMPDIR away with it."""
    store, temp = tmp_path / "store", tmp_path / "tmp"
    shutil.copytree(stand_in_store.root, store)
    temp.mkdir()
    args = ["--dataset-source", str(demo_zip), "--sources", "imagenet", "--store", str(store), "--epochs", "1"]
    env = {**os.environ, "CXRTL_STORE": str(store), "TMPDIR": str(temp)}
    started = [
        subprocess.Popen(
            [sys.executable, "pipeline.py", "run", *args, "--image-size", "32", "--seed", str(seed), "--output", out],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed, out in ((1, str(tmp_path / "a")), (2, str(tmp_path / "b")))
    ]
    runs = [Run(Path(p.args[-1]), 0, *p.communicate(timeout=_RUN_LIMIT_S)) for p in started]
    for run, process in zip(runs, started, strict=True):
        run.returncode = process.returncode
        run.check()
    run_ids = []
    for run in runs:
        (report,) = re.findall(rf"^Report:  {re.escape(str(store))}/reports/([^/]+)/report.html$", run.stdout, re.M)
        run_ids.append(report)
        stored = (store / "reports" / report / "report.txt").read_text()
        assert "\n".join(_printed_report(run.stdout)).strip().startswith(stored.strip()), run.stdout
    assert run_ids[0] != run_ids[1]
    for run, other in zip(runs, reversed(run_ids), strict=True):
        assert other not in run.stdout
    assert list(temp.iterdir()) == []


# --- a run against S3 -----------------------------------------------------------------------------------


def test_demo_run_against_s3_puts_everything_in_the_bucket(moto_server, tmp_path: Path):
    # moto, not s3rver: promotion moves the champion pointer by a conditional write, which s3rver ignores
    # (and a run refuses such a server at its start: tests/test_conditional_writes.py).
    s3_server = moto_server
    bucket = s3_server.make_bucket()
    args = ["--demo", "--sources", "imagenet", "--per-class", "12", "--epochs", "2", "--store", f"s3://{bucket}"]
    s3_run = run_pipeline(tmp_path / "out", *args, env=s3_server.env()).check()
    assert "imagenet" in s3_run.stdout and f"Store:   s3://{bucket}" in s3_run.stdout.splitlines()
    assert re.search(rf"^Report:  s3://{bucket}/reports/\w+/report\.html$", s3_run.stdout, re.M)
    assert not (s3_run.out / "store").exists()

    keys = [o.object_name for o in s3_server.client().list_objects(bucket, recursive=True)]

    def matching(pattern: str) -> list[str]:
        return [k for k in keys if re.fullmatch(pattern, k)]

    assert matching(r"weights/imagenet/[0-9a-f]{64}\.pth")
    assert matching(r"datasets/covid19-radiography-database/.+")
    # the checkpoints, deleted once the source's training is done; the run's identity and the training's records stay
    assert [key.rsplit("/", 2)[-2:] for key in matching(r"runs/.+")] == [["imagenet", "identity.json"]]
    assert [key.rsplit("/", 1)[-1] for key in matching(r"trainings/imagenet/.+")] == [
        "done.json",
        "identity.json",
        "owner.json",
    ]
    assert matching(r"models/imagenet/[^/]+/model\.pt")
    assert matching(r"reports/[^/]+/report\.html")
    # The promotion's decision, recorded; with 12 images a class the first model is below the floor, so no champion
    assert matching(r"champion/decisions/[^/]+\.json")
    assert "state/last-success.json" in keys

    # The same run again reads the last success from the bucket and ends early.
    again = run_pipeline(tmp_path / "again", *args, env=s3_server.env()).check()
    assert NOTHING_CHANGED in again.stdout
    assert not list(again.pipeline_run().glob("**/train"))

    secret = s3_server.secret_key
    for run in (s3_run, again):
        assert secret not in run.stdout and secret not in run.stderr
        for path in run.out.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


# --- bad input that only the run can see --------------------------------------------------------------------


def _assert_one_error_line(run: Run, *names: str) -> dict[str, tuple[str, list[str]]]:
    """The run failed with one error line naming ``names``; returns each failed task's log path and the log
    excerpt printed before it."""
    assert run.returncode == 2, f"exit {run.returncode}\n{run.stderr[-3000:]}"
    # A failed task's last log lines come first, on purpose: a header line, then the lines indented.
    lines = run.stderr.splitlines()
    excerpts = [line for line in lines if FAILED_TASK.match(line) or line.startswith("    ")]
    own = [line for line in lines if line not in excerpts]
    assert "Traceback" not in "\n".join(own), run.stderr[-3000:]
    errors = [line for line in own if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("pipeline.py: error: "), errors
    for name in names:
        assert name in errors[0]
    failed: dict[str, tuple[str, list[str]]] = {}
    for line in excerpts:
        header = FAILED_TASK.match(line)
        if header:
            failed[header["task"]] = (header["log"], [])
        else:
            assert failed, f"a log excerpt without its header: {line}"
            failed[next(reversed(failed))][1].append(line)
    return failed


def test_a_source_given_twice_is_refused_before_anything_runs(tmp_path: Path):
    """Two train tasks for one source would share its checkpoint and model keys; the report refuses it only
    after training and promotion."""
    run = run_pipeline(
        tmp_path / "out", "--demo", "--sources", "imagenet,moco-v2,imagenet", "--per-class", "12", "--epochs", "1"
    )
    _assert_one_error_line(run, "imagenet")
    assert not run.out.exists()


def test_a_missing_dataset_folder_is_one_error_line(tmp_path: Path):
    missing = tmp_path / "no-such-dataset"
    run = run_pipeline(tmp_path / "out", "--dataset-source", str(missing), "--sources", "imagenet")
    _assert_one_error_line(run, str(missing))


def test_a_zip_without_the_kaggle_layout_is_one_error_line(stand_in_store, tmp_path: Path):
    archive = tmp_path / "wrong.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("something/else.txt", "not the dataset")
    args = ["--dataset-source", str(archive), "--sources", "imagenet", "--store", str(stand_in_store.root)]
    run = run_pipeline(tmp_path / "out", *args)
    assert _assert_one_error_line(run, "ingest") == {}  # a task's own error: no log excerpt, no traceback
    # The failing task's own one-line error comes last, after where its whole log is.
    *_, where, last = run.stderr.splitlines()
    assert where == f"ingest failed; its log: {run.out / 'logs' / 'ingest.log'}"
    assert last.startswith("pipeline.py: error: ingest: ")
    assert "wrong.zip: no COVID-19_Radiography_Dataset/COVID/images/ folder" in last
    assert "Traceback" in (run.out / "logs" / "ingest.log").read_text()


def test_missing_weights_stop_the_run_at_check_weights_before_any_training(
    stand_in_store, demo_zip: Path, tmp_path: Path
):
    """Without --store, the run uses cxrtl's store ($CXRTL_STORE here), and its last line says what to put there."""
    store = tmp_path / "store"
    shutil.copytree(stand_in_store.root, store)  # imagenet and moco-v2 only
    args = ["--dataset-source", str(demo_zip), "--sources", "imagenet,chexpert"]
    run = run_pipeline(tmp_path / "out", *args, env={"CXRTL_STORE": str(store)})
    _assert_one_error_line(run, "check-weights")
    assert "Traceback" not in run.stdout + run.stderr
    last = run.stderr.splitlines()[-1]
    assert last.startswith(f"pipeline.py: error: check-weights: no verified weights in {store} for 1 of 2 sources")
    assert f"`cxrtl weights fetch --store {store} chexpert`" in last
    # Nothing after it ran: no preprocess, no train (which would have asked for a GPU).
    assert {p.name for p in run.pipeline_run().iterdir()} <= {"ingest", "check-weights"}
    assert not list(run.pipeline_run().glob("**/train"))


def test_skip_missing_weights_trains_the_rest_and_the_report_names_the_sources_left_out(
    stand_in_store, demo_zip: Path, tmp_path: Path
):
    store = tmp_path / "store"
    shutil.copytree(stand_in_store.root, store)  # imagenet and moco-v2 only
    args = ["--dataset-source", str(demo_zip), "--sources", "imagenet,chexpert", "--store", str(store)]
    run = run_pipeline(tmp_path / "out", *args, "--epochs", "1", "--image-size", "64", "--skip-missing-weights").check()
    assert [p.parent.name for p in run.pipeline_run().glob("*/train")] != []
    assert {p.name for p in (store / "models").iterdir()} == {"imagenet"}
    report = "\n".join(_printed_report(run.stdout))
    assert "Not trained, for want of verified weights in the store (skip_missing_weights=true): chexpert." in report


# --- --runner docker, where it is refused before anything is written --------------------------------------
# (Runs in the images: tests/test_containers.py, where a Docker engine answers.)


def test_runner_docker_without_an_engine_is_one_error_line_naming_how_to_start_one(tmp_path: Path):
    nowhere = f"unix://{tmp_path}/no-docker.sock"
    run = run_pipeline(tmp_path / "out", "--demo", "--runner", "docker", env={"DOCKER_HOST": nowhere})
    _assert_one_error_line(run, nowhere, "start one", "--runner subprocess")
    assert not run.out.exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--store", "s3://cxrtl"], "s3://cxrtl"),
        (["--dataset-source", "kaggle"], "--dataset-source"),
        (["--dataset-source", "s3://cxrtl/uploads/data.zip"], "--dataset-source"),
    ],
    ids=["s3-store", "kaggle", "s3-dataset"],
)
def test_runner_docker_refuses_what_needs_a_network(tmp_path: Path, args: list[str], named: str):
    run = run_pipeline(tmp_path / "out", "--demo", "--runner", "docker", *args)
    _assert_one_error_line(run, named, "without a network")
    assert not run.out.exists()
