"""``submit`` and ``schedule`` against a recording stand-in of the KFP v2beta1 API (tests/kfp_api_stub.py).

The CLI runs in-process through pipeline.py's own parser and ``main``; only the compiling is stood in for
(:class:`CompilePackage`), by a small pipeline with one parameter of each type.
"""
# No "from __future__ import annotations" here: kfp reads the component's annotations as types.

import hashlib
import logging
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kfp import compiler, dsl
from kfp_api_stub import KfpApiStub
from oci_registry import push

# pipeline.py and runners/ sit at the repo root, outside the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pipeline
from components import images
from runners import kfp_api

TOKEN = "tok-3f9a1c-do-not-print"
REQUIRED = ["--param", "store_url=s3://models"]


def compile_tiny(path: Path, gpu_type: str) -> None:
    """A small real pipeline with one parameter of each type; gpu_type changes the compiled bytes."""

    @dsl.component(base_image=images.image(images.CPU))
    def train(store_url: str, epochs: int, lr: float, sources: list, dry_run: bool, options: dict) -> str:
        return store_url

    # KFP takes a parameter's default from the signature, so the list and dict defaults stay literal.
    @dsl.pipeline(name="cxrtl-tiny")
    def tiny(
        store_url: str,
        epochs: int = 2,
        lr: float = 0.001,
        sources: list = ["imagenet"],  # noqa: B006
        dry_run: bool = False,
        options: dict = {"seed": 1},  # noqa: B006
    ) -> None:
        task = train(store_url=store_url, epochs=epochs, lr=lr, sources=sources, dry_run=dry_run, options=options)
        task.set_accelerator_type(gpu_type).set_accelerator_limit(1)

    compiler.Compiler().compile(tiny, str(path))


class CompilePackage:
    """Stands in for pipeline.compile_pipeline; records the cluster options it is given."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls: list[pipeline.ClusterOptions] = []

    def __call__(self, output: Path, options: pipeline.ClusterOptions) -> Path:
        self.calls.append(options)
        path = self.folder / f"pipeline-{len(self.calls)}.yaml"
        compile_tiny(path, options.gpu_resource)
        return path


def one_error_line(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """The single stderr line of a failed command; nothing on stdout, no warnings logged on the side."""
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pipeline.py: error: "), err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    return lines[0]


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KFP_TOKEN", raising=False)
    monkeypatch.delenv(kfp_api.SA_TOKEN_PATH_ENV, raising=False)
    monkeypatch.delenv(kfp_api.UI_URL_ENV, raising=False)
    monkeypatch.setattr(kfp_api, "SA_TOKEN_PATHS", (str(tmp_path / "kfp-token"), str(tmp_path / "sa-token")))


@pytest.fixture(autouse=True)
def images_of_this_code(monkeypatch: pytest.MonkeyPatch, image_registry: str) -> None:
    """The images: block as make push leaves it (this checkout's content tag, pushed to a registry): submit has
    no warning to give."""
    tag = images.content_tag()
    refs = {name: f"{image_registry}/{name}:{tag}" for name in (images.TRAIN, images.CPU)}
    for name in refs:
        push(image_registry, name, tag)
    monkeypatch.setattr(images, "images", lambda: refs)


@pytest.fixture
def stub() -> Iterator[KfpApiStub]:
    """KFP as a standalone install's port-forward of ml-pipeline-ui reaches it: the UI in front of the API."""
    with KfpApiStub(via_ui=True) as server:
        yield server


@pytest.fixture
def compile_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CompilePackage:
    """What pipeline.py submit and schedule compile, while the test runs."""
    folder = tmp_path / "packages"
    folder.mkdir()
    stand_in = CompilePackage(folder)
    monkeypatch.setattr(pipeline, "compile_pipeline", stand_in)
    return stand_in


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_submit_refuses_an_image_that_was_never_pushed_before_any_request(
    stub: KfpApiStub,
    compile_package: CompilePackage,
    image_registry: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    unpushed = f"{image_registry}/cxrtl-cpu:0.0.0-never"
    monkeypatch.setattr(images, "images", lambda: {images.TRAIN: unpushed, images.CPU: unpushed})
    argv = ["submit", "--host", stub.url, *REQUIRED]

    assert pipeline.main(argv) == 2
    line = one_error_line(capsys, caplog)
    assert line.startswith(f"pipeline.py: error: image {unpushed} is not in its registry ({image_registry} has no")
    assert stub.requests == []

    # A registry only the cluster reaches: the user says so, and the images are not asked for.
    assert pipeline.main([*argv, "--skip-image-check"]) == 0
    assert len(stub.runs) == 1


def test_submit_uploads_the_package_and_starts_a_run_with_typed_parameters(
    stub: KfpApiStub, compile_package: CompilePackage, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["submit", "--host", stub.url + "/", "--experiment", "nightly", "--run-name", "first", "--token", TOKEN]
    argv += ["--gpu-resource", "nvidia.com/gpu-h100", *REQUIRED, "--param", "epochs=5", "--param", "lr=0.01"]
    argv += ["--param", 'sources=["imagenet","chexpert"]', "--param", "dry_run=TRUE"]
    argv += ["--param", 'options={"seed": 7}']

    assert pipeline.main(argv) == 0

    assert [options.gpu_resource for options in compile_package.calls] == ["nvidia.com/gpu-h100"]
    [upload] = stub.calls("POST", "/pipelines/upload")
    assert upload.fields["uploadfile"] == (compile_package.folder / "pipeline-1.yaml").read_text()
    assert upload.filenames["uploadfile"].endswith(".yaml")
    assert upload.query["name"] == "cxrtl-tiny"
    [uploaded] = stub.pipelines.values()
    [version] = stub.versions.values()
    [experiment] = stub.experiments.values()
    assert experiment["display_name"] == "nightly"
    [create] = stub.calls("POST", "/runs")
    assert create.json["display_name"] == "first"
    assert create.json["experiment_id"] == experiment["experiment_id"]
    assert create.json["pipeline_version_reference"] == {
        "pipeline_id": uploaded["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert create.json["runtime_config"]["parameters"] == {
        "store_url": "s3://models",
        "epochs": 5,
        "lr": 0.01,
        "sources": ["imagenet", "chexpert"],
        "dry_run": True,
        "options": {"seed": 7},
    }
    assert "pipeline_spec" not in create.json  # the run points at the uploaded version, not an inline copy
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in stub.requests)
    [run_id] = stub.runs
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == f"{stub.url}/#/runs/details/{run_id}"
    assert err == ""
    assert TOKEN not in out


def test_submit_warns_in_one_line_when_the_images_are_not_this_codes(
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    image_registry: str,
) -> None:
    old = {name: f"{image_registry}/{name}:0.1.0" for name in (images.TRAIN, images.CPU)}
    for name in old:
        push(image_registry, name, "0.1.0")
    monkeypatch.setattr(images, "images", lambda: old)
    assert pipeline.main(["submit", "--host", stub.url, *REQUIRED]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {old[images.TRAIN]}, {old[images.CPU]} in manifests/base/")
    assert f"would be tagged {images.content_tag()}): run make push" in err[0]
    assert stub.runs  # a warning, not a refusal: the user may have pushed these images from this code by hand


def test_a_changed_package_becomes_a_new_version_and_an_unchanged_one_is_reused(
    stub: KfpApiStub, compile_package: CompilePackage, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["submit", "--host", stub.url, *REQUIRED]
    assert pipeline.main([*base, "--gpu-resource", "nvidia.com/gpu"]) == 0
    assert pipeline.main([*base, "--gpu-resource", "amd.com/gpu"]) == 0

    assert len(stub.calls("POST", "/pipelines/upload")) == 1
    [upload] = stub.calls("POST", "/pipelines/upload_version")
    second = compile_package.folder / "pipeline-2.yaml"
    assert upload.fields["uploadfile"] == second.read_text()
    [pipeline_id] = stub.pipelines
    assert upload.query["pipelineid"] == pipeline_id
    digest = hashlib.sha256(second.read_bytes()).hexdigest()
    assert re.fullmatch(rf"\d{{8}}-\d{{6}}-{digest[:12]}", upload.query["name"])
    new_version = next(v for v in stub.versions.values() if v["display_name"] == upload.query["name"])
    last_run = stub.calls("POST", "/runs")[-1].json
    assert last_run["pipeline_version_reference"]["pipeline_version_id"] == new_version["pipeline_version_id"]
    assert len(stub.calls("POST", "/experiments")) == 1  # the default experiment is found the second time

    assert pipeline.main([*base, "--gpu-resource", "amd.com/gpu"]) == 0
    assert len(stub.calls("POST", "/pipelines/upload_version")) == 1
    assert len(stub.versions) == 2
    last_run = stub.calls("POST", "/runs")[-1].json
    assert last_run["pipeline_version_reference"]["pipeline_version_id"] == new_version["pipeline_version_id"]
    assert "package unchanged, reusing version" in capsys.readouterr().out


def test_schedule_creates_a_recurring_run_with_cron_one_at_a_time_and_no_catch_up(
    stub: KfpApiStub, compile_package: CompilePackage, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["schedule", "--host", stub.url, "--cron", "0  30 2 * * MON-FRI", "--name", "weekdays", *REQUIRED]
    assert pipeline.main([*argv, "--param", "epochs=3"]) == 0

    [create] = stub.calls("POST", "/recurringruns")
    body = create.json
    assert body["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * MON-FRI"
    assert str(body["max_concurrency"]) == "1"
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "weekdays"
    assert body["runtime_config"]["parameters"] == {"store_url": "s3://models", "epochs": 3}
    [version] = stub.versions.values()
    assert body["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    [recurring_id] = stub.recurring_runs
    assert capsys.readouterr().out.splitlines()[-1] == f"{stub.url}/#/recurringrun/details/{recurring_id}"


def test_schedule_list_and_delete_by_name_and_by_id(
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kfp_api, "_PAGE_SIZE", 1)  # so listing has to follow next_page_token
    for name, cron in (("nightly", "0 0 3 * * *"), ("weekly", "0 0 4 ? * SUN")):
        argv = ["schedule", "--host", stub.url, "--cron", cron, "--name", name, *REQUIRED]
        assert pipeline.main(argv) == 0
    ids = {run["display_name"]: run_id for run_id, run in stub.recurring_runs.items()}
    capsys.readouterr()

    assert pipeline.main(["schedule", "--host", stub.url, "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    version = {
        run["display_name"]: run["pipeline_version_reference"]["pipeline_version_id"]
        for run in stub.recurring_runs.values()
    }
    assert listed == [
        f"{ids['nightly']}\tnightly\tcron '0 0 3 * * *'\tversion {version['nightly']}\tENABLED",
        f"{ids['weekly']}\tweekly\tcron '0 0 4 ? * SUN'\tversion {version['weekly']}\tENABLED",
    ]

    uploads = len(stub.requests)
    argv = ["schedule", "--host", stub.url, "--cron", "0 0 5 * * *", "--name", "nightly", *REQUIRED]
    assert pipeline.main(argv) == 2
    assert "a recurring run named 'nightly' already exists" in one_error_line(capsys, caplog)
    assert [r.method for r in stub.requests[uploads:]] == ["GET", "GET", "GET"]  # healthz and two list pages

    compiled = len(compile_package.calls)
    assert pipeline.main(["schedule", "--host", stub.url, "--delete", "nightly"]) == 0
    assert pipeline.main(["schedule", "--host", stub.url, "--delete", ids["weekly"]]) == 0
    deleted = [r.path.rsplit("/", 1)[1] for r in stub.calls("DELETE", "/recurringruns/.+")]
    assert deleted == [ids["nightly"], ids["weekly"]]
    assert stub.recurring_runs == {}
    capsys.readouterr()

    assert pipeline.main(["schedule", "--host", stub.url, "--list"]) == 0
    assert capsys.readouterr().out == "no recurring runs\n"
    assert pipeline.main(["schedule", "--host", stub.url, "--delete", "nightly"]) == 2
    assert "no recurring run with ID or name 'nightly'" in one_error_line(capsys, caplog)
    assert len(compile_package.calls) == compiled  # listing and deleting compile nothing


@pytest.mark.parametrize(
    ("cron", "names"),
    [
        ("0 3 * * *", "5 fields, KFP expects 6"),
        ("0 0 3 * * * *", "7 fields"),
        ("61 0 3 * * *", "seconds field '61': 61 is outside 0-59"),
        ("0 0 24 * * *", "hours field '24'"),
        ("0 0 3 0 * *", "day-of-month field '0'"),
        ("0 0 3 * 13 *", "month field '13'"),
        ("0 0 3 * * 8", "day-of-week field '8'"),
        ("0 0 3 * * FUNDAY", "day-of-week field 'FUNDAY'"),
        ("0 0 3 * * MON-", "day-of-week field 'MON-'"),
        ("0 0 3 * * 1,,5", "day-of-week field '1,,5'"),
        ("*/0 * * * * *", "seconds field '*/0': step '0'"),
        ("0 0 5-2 * * *", "hours field '5-2': range '5-2' runs backwards"),
        ("? 0 3 * * *", "seconds field '?'"),
    ],
)
def test_a_bad_cron_is_one_error_line_and_no_request(
    cron: str,
    names: str,
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert pipeline.main(["schedule", "--host", stub.url, "--cron", cron, *REQUIRED]) == 2
    line = one_error_line(capsys, caplog)
    assert line.startswith(f"pipeline.py: error: bad --cron {cron!r}: ")
    assert names in line
    assert stub.requests == []
    assert compile_package.calls == []


@pytest.mark.parametrize(
    "cron",
    ["0 0 9 ? * 2-6", "0 0 3 * * *", "*/10 * * * * ?", "0 0,30 8-18/2 1,15 jan-Jun,DEC sun", "30 5/15 * * * *"],
)
def test_validate_cron_accepts_kfp_cron_syntax(cron: str) -> None:
    assert kfp_api.validate_cron(f"  {cron} ") == cron


@pytest.mark.parametrize(
    ("params", "names"),
    [
        (["--param", "epcohs=3"], "no parameter 'epcohs' (did you mean 'epochs'?)"),
        (["--param", "epochs=three"], "--param epochs=three: epochs expects an integer"),
        (["--param", "lr=nan"], "lr expects a finite number"),
        (["--param", "dry_run=maybe"], "dry_run expects true or false"),
        (["--param", "sources=imagenet"], "sources expects a JSON list"),
        (["--param", "options=[1]"], "options expects a JSON object"),
        (["--param", "epochs"], "--param 'epochs' is not KEY=VALUE"),
        (["--param", "epochs=1", "--param", "epochs=2"], "--param epochs is given twice"),
    ],
)
def test_a_bad_param_is_one_error_line_and_no_request(
    params: list[str],
    names: str,
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert pipeline.main(["submit", "--host", stub.url, *REQUIRED, *params]) == 2
    assert names in one_error_line(capsys, caplog)
    assert stub.requests == []


def test_a_missing_required_param_is_named(
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert pipeline.main(["submit", "--host", stub.url, "--param", "epochs=1"]) == 2
    assert "store_url has no default: pass --param store_url=VALUE" in one_error_line(capsys, caplog)
    assert stub.requests == []


@pytest.mark.parametrize("command", [["submit", *REQUIRED], ["schedule", "--list"]])
def test_an_unreachable_host_is_one_error_line_naming_it(
    command: list[str],
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = closed_port_url()
    caplog.set_level(logging.DEBUG, logger="urllib3")
    assert pipeline.main([command[0], "--host", host, *command[1:]]) == 2
    line = one_error_line(capsys, caplog)
    assert line.startswith(f"pipeline.py: error: cannot reach KFP at {host} (")
    assert "Connection refused" in line
    # one connection attempt, not urllib3's default of four with a warning per retry
    assert [r for r in caplog.records if "Retrying" in r.getMessage()] == []


def test_a_host_without_scheme_is_refused_before_connecting(
    compile_package: CompilePackage, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert pipeline.main(["submit", "--host", "localhost:8080", *REQUIRED]) == 2
    assert "--host 'localhost:8080' is not an http(s) URL" in one_error_line(capsys, caplog)


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("command", [["submit", *REQUIRED], ["schedule", "--delete", "nightly"]])
def test_refused_credentials_are_one_error_line_after_one_request(
    status: int,
    command: list[str],
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with KfpApiStub(reject_with=status) as server:
        assert pipeline.main([command[0], "--host", server.url, "--token", TOKEN, *command[1:]]) == 2
    line = one_error_line(capsys, caplog)
    assert line == (
        f"pipeline.py: error: KFP at {server.url} refused the credentials ({status}): pass --token or set KFP_TOKEN"
    )
    assert TOKEN not in line
    assert len(server.requests) == 1  # kfp.Client's own health check would retry 5 times, 5 s apart


def test_a_login_page_instead_of_the_api_is_one_error_line(
    compile_package: CompilePackage, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with KfpApiStub(answer_html=True) as server:
        assert pipeline.main(["submit", "--host", server.url, *REQUIRED]) == 2
    line = one_error_line(capsys, caplog)
    assert f"KFP at {server.url} answered the health check with text/html" in line
    assert "not JSON" in line


def test_multi_user_kfp_needs_a_namespace_and_gets_it_everywhere(
    compile_package: CompilePackage, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with KfpApiStub(multi_user=True) as server:
        assert pipeline.main(["submit", "--host", server.url, *REQUIRED]) == 2
        assert "is multi-user: pass --namespace" in one_error_line(capsys, caplog)
        assert [r.path for r in server.requests] == ["/apis/v2beta1/healthz"]

        assert pipeline.main(["submit", "--host", server.url, "--namespace", "team-a", *REQUIRED]) == 0
    [upload] = server.calls("POST", "/pipelines/upload")
    assert upload.query["namespace"] == "team-a"
    assert all(r.query["namespace"] == "team-a" for r in server.calls("GET", "/pipelines"))
    assert server.calls("POST", "/experiments")[0].json["namespace"] == "team-a"


def test_token_comes_from_flag_env_then_token_files_and_is_never_printed(
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    def header_of_next_run(*extra: str) -> str | None:
        before = len(stub.requests)
        assert pipeline.main(["submit", "--host", stub.url, *REQUIRED, *extra]) == 0
        headers = {r.headers.get("authorization") for r in stub.requests[before:]}
        assert len(headers) == 1
        return headers.pop()

    caplog.set_level(logging.DEBUG)
    assert header_of_next_run() is None
    kfp_file, sa_file = (Path(p) for p in kfp_api.SA_TOKEN_PATHS)
    sa_file.write_text("sa-token\n")
    assert header_of_next_run() == "Bearer sa-token"
    kfp_file.write_text("kfp-token\n")
    assert header_of_next_run() == "Bearer kfp-token"
    override = tmp_path / "override-token"
    override.write_text("override-token")
    monkeypatch.setenv(kfp_api.SA_TOKEN_PATH_ENV, str(override))
    assert header_of_next_run() == "Bearer override-token"
    monkeypatch.setenv("KFP_TOKEN", "env-token")
    assert header_of_next_run() == "Bearer env-token"
    assert header_of_next_run("--token", TOKEN) == f"Bearer {TOKEN}"

    out, err = capsys.readouterr()
    for secret in ("sa-token", "kfp-token", "override-token", "env-token", TOKEN):
        assert secret not in out + err + caplog.text


def test_schedule_needs_one_of_cron_list_delete(
    compile_package: CompilePackage, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    assert pipeline.main(["schedule", "--host", "http://127.0.0.1:1"]) == 2
    assert "--cron --list --delete is required" in one_error_line(capsys, caplog)


def test_a_server_error_midway_is_one_line_with_the_servers_message(
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub.fail("POST", "/runs", 500, "Failed to create a run:\n  workflow quota exceeded\n  at server.go:42")
    assert pipeline.main(["submit", "--host", stub.url, *REQUIRED]) == 2
    line = one_error_line(capsys, caplog)
    assert line == (
        f"pipeline.py: error: KFP at {stub.url} failed creating the run (HTTP 500): "
        "Failed to create a run: workflow quota exceeded at server.go:42"
    )


# --- the server's version ---------------------------------------------------------------------------


@pytest.mark.parametrize("via_ui", [False, True], ids=["api-server", "ui"])
@pytest.mark.parametrize("command", [["submit", *REQUIRED], ["schedule", "--cron", "@daily", *REQUIRED]])
def test_an_older_kfp_is_refused_with_one_line_before_anything_is_uploaded(
    via_ui: bool,
    command: list[str],
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with KfpApiStub(version="2.14.4", via_ui=via_ui) as server:
        assert pipeline.main([command[0], "--host", server.url, *command[1:]]) == 2
    line = one_error_line(capsys, caplog)
    assert line == (
        f"pipeline.py: error: KFP at {server.url} is version 2.14.4; this pipeline needs KFP 2.15.0 or newer "
        "(artifact fan-in from a ParallelFor, optional Secrets): upgrade Kubeflow Pipelines"
    )
    assert [r.path for r in server.requests] == ["/apis/v2beta1/healthz"]


@pytest.mark.parametrize("version", ["2.15.0", "v2.17.1", "2.16.0-rc.1", "3.0.0"])
def test_a_recent_enough_kfp_is_accepted(version: str, compile_package: CompilePackage) -> None:
    with KfpApiStub(version=version) as server:
        assert pipeline.main(["submit", "--host", server.url, *REQUIRED]) == 0
    assert server.calls("POST", "/runs")


@pytest.mark.parametrize("version", ["unknown", "", "master"])
def test_a_kfp_without_a_release_number_is_refused_unless_told_to_skip_the_check(
    version: str,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with KfpApiStub(version=version) as server:
        assert pipeline.main(["submit", "--host", server.url, *REQUIRED]) == 2
        line = one_error_line(capsys, caplog)
        assert f"reports version {version!r}, not a release" in line and "--skip-version-check" in line
        assert not server.calls("POST", "/pipelines/upload")
        assert pipeline.main(["submit", "--host", server.url, "--skip-version-check", *REQUIRED]) == 0
    assert server.calls("POST", "/runs")


# --- links to the UI ---------------------------------------------------------------------------------


def test_the_api_servers_address_never_becomes_a_run_link(
    compile_package: CompilePackage, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with KfpApiStub(via_ui=False) as server:
        assert pipeline.main(["submit", "--host", server.url, *REQUIRED]) == 0
        [first] = server.runs
        last = capsys.readouterr().out.splitlines()[-1]
        assert last.startswith(f"ID {first}: --host is KFP's API server, not its UI, so no link")
        assert server.url not in last

        ui = "https://kubeflow.example.com/pipeline"
        assert pipeline.main(["submit", "--host", server.url, "--ui-url", ui + "/", *REQUIRED]) == 0
        second = list(server.runs)[-1]
        assert capsys.readouterr().out.splitlines()[-1] == f"{ui}/#/runs/details/{second}"

        monkeypatch.setenv(kfp_api.UI_URL_ENV, "http://localhost:8080")
        argv = ["schedule", "--host", server.url, "--cron", "@weekly", *REQUIRED]
        assert pipeline.main(argv) == 0
        [recurring] = server.recurring_runs
        assert capsys.readouterr().out.splitlines()[-1] == f"http://localhost:8080/#/recurringrun/details/{recurring}"


def test_a_bad_ui_url_is_refused_before_any_request(
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert pipeline.main(["submit", "--host", stub.url, "--ui-url", "kubeflow.example.com", *REQUIRED]) == 2
    assert "--ui-url 'kubeflow.example.com' is not an http(s) URL" in one_error_line(capsys, caplog)
    assert stub.requests == [] and compile_package.calls == []


# --- schedules and new versions ----------------------------------------------------------------------


def test_a_schedule_is_pinned_to_the_uploaded_version_by_default(
    stub: KfpApiStub, compile_package: CompilePackage, capsys: pytest.CaptureFixture[str]
) -> None:
    assert pipeline.main(["schedule", "--host", stub.url, "--cron", "@daily", *REQUIRED]) == 0
    [version] = stub.versions.values()
    [recurring] = stub.recurring_runs.values()
    assert recurring["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert f"pinned to version {version['display_name']!r}" in capsys.readouterr().out


def test_a_schedule_can_follow_the_latest_version_and_says_so(
    stub: KfpApiStub, compile_package: CompilePackage, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["schedule", "--host", stub.url, "--cron", "@daily", "--pipeline-version", "latest", *REQUIRED]
    assert pipeline.main(argv) == 0
    [create] = stub.calls("POST", "/recurringruns")
    [pipeline_id] = stub.pipelines
    # No version ID: KFP's scheduler takes the pipeline's latest version when each run starts.
    assert create.json["pipeline_version_reference"] == {"pipeline_id": pipeline_id}
    assert "the latest pipeline version at each run" in capsys.readouterr().out

    assert pipeline.main(["schedule", "--host", stub.url, "--list"]) == 0
    assert "\tlatest version\t" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("cron", "sent"),
    [
        ("@daily", "@daily"),
        ("@midnight", "@midnight"),
        ("@annually", "@annually"),
        ("  @every   24h ", "@every 24h"),
        ("@every 1h30m", "@every 1h30m"),
        ("@every 1.5h", "@every 1.5h"),
    ],
)
def test_cron_descriptors_kfp_accepts_are_passed_on(
    cron: str, sent: str, stub: KfpApiStub, compile_package: CompilePackage
) -> None:
    assert pipeline.main(["schedule", "--host", stub.url, "--cron", cron, *REQUIRED]) == 0
    [create] = stub.calls("POST", "/recurringruns")
    assert create.json["trigger"]["cron_schedule"]["cron"] == sent


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("@Daily", "KFP knows the descriptors @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
        ("@fortnightly", "and @every DURATION"),
        ("@every", "'' is not a duration"),
        ("@every 1d", "'1d' is not a duration such as 24h"),
        ("@every 24", "'24' is not a duration"),
        ("@every 30s", "every 30s is too often"),
    ],
)
def test_cron_descriptors_kfp_would_refuse_or_misread_are_refused(
    cron: str,
    reason: str,
    stub: KfpApiStub,
    compile_package: CompilePackage,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert pipeline.main(["schedule", "--host", stub.url, "--cron", cron, *REQUIRED]) == 2
    line = one_error_line(capsys, caplog)
    assert line.startswith(f"pipeline.py: error: bad --cron {cron!r}: ") and reason in line
    assert stub.requests == []
