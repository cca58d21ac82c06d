"""pipeline.py's command line: help without a command, --version, one-line mistakes, --host from the
environment, and `status` following a run through the public KFP client (against tests/kfp_api_stub.py)."""
# No "from __future__ import annotations": kfp reads annotations as types where pipeline.py is imported.

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kfp_api_stub import KfpApiStub
from refusal import PIPELINE, one_error_line
from test_cli import options_without_their_default

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pipeline
from runners import kfp_api

RUN_ID = "3c1e9b7a-run"


@pytest.fixture(autouse=True)
def no_ambient_kfp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KFP_TOKEN", kfp_api.SA_TOKEN_PATH_ENV, kfp_api.UI_URL_ENV, *kfp_api.HOST_ENVS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp_api, "SA_TOKEN_PATHS", (str(tmp_path / "no-token"),))


@pytest.fixture
def stub() -> Iterator[KfpApiStub]:
    with KfpApiStub(via_ui=True) as server:
        server.runs[RUN_ID] = {
            "run_id": RUN_ID,
            "display_name": "first",
            "state": "PENDING",
            "runtime_config": {"parameters": {"store": "s3://bucket/prefix"}},
        }
        yield server


def _tasks(**states: str) -> dict:
    return {"run_details": {"task_details": [{"task_id": n, "display_name": n, "state": s} for n, s in states.items()]}}


def test_without_a_command_it_prints_its_help(capsys):
    assert pipeline.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pipeline.py")
    for command in ("compile", "run", "submit", "schedule", "status"):
        assert command in out


def test_every_option_has_help_that_shows_its_default():
    alternatives = ("--dataset-source", "--cron", "--delete")  # each the alternative of another option
    assert not options_without_their_default(pipeline.build_parser(), exempt=alternatives)


def test_version(capsys):
    assert pipeline.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("pipeline.py (cxrtl ")


def test_compile_into_a_missing_folder_is_one_line(capsys, tmp_path):
    target = tmp_path / "missing" / "x.yaml"
    status = pipeline.main(["compile", "-o", str(target)])
    one_error_line(status, capsys.readouterr().err, PIPELINE, naming=[str(target), "no folder"], nothing_at=[target])


def test_a_mistyped_command_gets_a_suggestion(capsys):
    one_error_line(pipeline.main(["runn"]), capsys.readouterr().err, PIPELINE, naming=["did you mean 'run'?"])


def test_status_follows_a_run_to_its_end_and_names_the_report(stub, capsys):
    stub.progress(
        RUN_ID,
        {"state": "RUNNING", **_tasks(ingest="RUNNING")},
        {"state": "RUNNING", **_tasks(ingest="SUCCEEDED", train="RUNNING")},
        {"state": "SUCCEEDED", **_tasks(ingest="SUCCEEDED", train="SUCCEEDED")},
    )
    assert pipeline.main(["status", "--host", stub.url, RUN_ID, "--wait", "--interval", "0"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines[:4] == [["ingest", "RUNNING"], ["ingest", "SUCCEEDED"], ["train", "RUNNING"], ["train", "SUCCEEDED"]]
    assert " ".join(lines[4]) == f"run 'first' ({RUN_ID}): SUCCEEDED"
    assert lines[5][:2] == ["report:", f"s3://bucket/prefix/reports/{RUN_ID}/"]
    assert len(stub.calls("GET", f"/runs/{RUN_ID}")) == 3


def test_status_without_wait_looks_once(stub, capsys):
    stub.progress(RUN_ID, {"state": "RUNNING", **_tasks(ingest="RUNNING")}, {"state": "SUCCEEDED"})
    assert pipeline.main(["status", "--host", stub.url, RUN_ID]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"run 'first' ({RUN_ID}): RUNNING"
    assert len(stub.calls("GET", f"/runs/{RUN_ID}")) == 1


def test_status_of_a_failed_run_exits_1_and_names_no_report(stub, capsys):
    stub.progress(RUN_ID, {"state": "FAILED", **_tasks(ingest="SUCCEEDED", preprocess="FAILED")})
    assert pipeline.main(["status", "--host", stub.url, RUN_ID, "--wait", "--interval", "0"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"run 'first' ({RUN_ID}): FAILED"
    assert "report:" not in out


def test_status_of_an_unknown_run_is_one_line(stub, capsys):
    status = pipeline.main(["status", "--host", stub.url, "no-such-run"])
    one_error_line(status, capsys.readouterr().err, PIPELINE, naming=["no-such-run"])


@pytest.mark.parametrize("variable", kfp_api.HOST_ENVS)
def test_host_comes_from_the_environment(stub, capsys, monkeypatch, variable):
    monkeypatch.setenv(variable, stub.url)
    assert pipeline.main(["status", RUN_ID]) == 0
    assert stub.calls("GET", f"/runs/{RUN_ID}")


def test_kfp_host_comes_before_the_sdks_variable(stub, capsys, monkeypatch):
    monkeypatch.setenv("KFP_HOST", stub.url)
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", "http://127.0.0.1:9")  # nothing answers there
    assert pipeline.main(["status", RUN_ID]) == 0


def test_no_host_anywhere_is_one_line(capsys):
    status = pipeline.main(["status", RUN_ID])
    one_error_line(status, capsys.readouterr().err, PIPELINE, naming=["--host", "KFP_HOST"])
