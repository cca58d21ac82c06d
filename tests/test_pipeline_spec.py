"""The compiled pipeline, loaded back with kfp: DAG shape, GPUs, retries, caching, Kubernetes settings; CLI errors.

Compiling takes well under a second, so each test compiles what it needs instead of sharing files.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp import components
from refusal import PIPELINE, refused

import pipeline
from components.images import image
from components.placement import GPU_QUEUE_ALLOWANCE_S, ClusterOptions
from cxrtl.settings import RECIPE_VALUE, RunSettings, value_type
from cxrtl.weights import SOURCE_NAMES
from pipeline import DEFAULT_STORE

REPO = Path(__file__).resolve().parents[1]
CONTAINER_TASKS = ("ingest", "check-weights", "check-changes", "preprocess", "train", "evaluate", "promote", "report")
# Set in the environment while compiling: none may reach the compiled YAML.
MARKERS = {
    "MINIO_ACCESS_KEY": "access-marker-7d1f",
    "MINIO_SECRET_KEY": "secret-marker-93ab",
    "KAGGLE_API_TOKEN": "kaggle-token-marker-0b6d",
    "KAGGLE_USERNAME": "kaggle-user-marker-51c2",
    "KAGGLE_KEY": "kaggle-key-marker-e07a",
}


class Spec:
    """A compiled package as kfp loads it: the pipeline spec and the Kubernetes platform spec, as plain dicts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text()
        component = components.load_component_from_file(str(path))
        self.pipeline = json_format.MessageToDict(component.pipeline_spec)
        self.kubernetes = json_format.MessageToDict(component.platform_spec)["platforms"]["kubernetes"]
        self.tasks: dict[str, dict[str, Any]] = {}  # every task of every DAG, by name
        self.parent: dict[str, str] = {}  # task name -> "root" or the name of the component whose DAG holds it
        for owner, dag in [("root", self.pipeline["root"]["dag"])] + [
            (name, c["dag"]) for name, c in self.pipeline["components"].items() if "dag" in c
        ]:
            for name, task in dag["tasks"].items():
                assert name not in self.tasks, f"task name {name} used twice"
                self.tasks[name] = task
                self.parent[name] = owner

    def executor(self, task: str) -> dict[str, Any]:
        component = self.pipeline["components"][self.tasks[task]["componentRef"]["name"]]
        return self.pipeline["deploymentSpec"]["executors"][component["executorLabel"]]["container"]

    def platform(self, task: str) -> dict[str, Any]:
        label = self.pipeline["components"][self.tasks[task]["componentRef"]["name"]]["executorLabel"]
        return self.kubernetes["deploymentSpec"]["executors"].get(label, {})

    def owner(self, task: str) -> dict[str, Any]:
        """The task (a condition or a loop) whose sub-DAG holds ``task``."""
        (owner,) = [t for t in self.tasks.values() if t["componentRef"]["name"] == self.parent[task]]
        return owner

    def loop(self) -> tuple[str, dict[str, Any]]:
        loops = [(name, t) for name, t in self.tasks.items() if "parameterIterator" in t]
        assert len(loops) == 1, loops
        return loops[0]


@pytest.fixture
def no_credentials_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in MARKERS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def default_spec(tmp_path: Path, no_credentials_in_env: None) -> Spec:
    return Spec(pipeline.compile_pipeline(tmp_path / "cxrtl.yaml", ClusterOptions()))


def _compile_cli(tmp_path: Path, *options: str) -> Spec:
    out = tmp_path / "cli.yaml"
    done = subprocess.run(
        [sys.executable, "pipeline.py", "compile", "-o", str(out), *options],
        cwd=REPO,
        env={**os.environ, **MARKERS},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    return Spec(out)


def _secret_env(platform: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["secretName"]: s for s in platform.get("secretAsEnv", [])}


def _key_to_env(entry: dict[str, Any], key_field: str) -> dict[str, str]:
    return {k[key_field]: k["envVar"] for k in entry["keyToEnv"]}


# --- DAG shape -------------------------------------------------------------------------------------


_KFP_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", bool: "BOOLEAN", list: "LIST"}


def test_the_pipeline_parameters_are_the_run_settings_with_their_types_and_defaults(default_spec: Spec):
    compiled = default_spec.pipeline["root"]["inputDefinitions"]["parameters"]
    defaults = RunSettings().to_pipeline()
    expected = {
        "dataset_source": ("STRING", "kaggle"),
        "store": ("STRING", DEFAULT_STORE),
        **{f.name: (_KFP_TYPES[value_type(f)], defaults[f.name]) for f in dataclasses.fields(RunSettings)},
    }
    assert {name: (p["parameterType"], p["defaultValue"]) for name, p in compiled.items()} == expected
    # "The recipe's value" is None in RunSettings and the one sentinel in the pipeline.
    assert [compiled[name]["defaultValue"] for name in ("epochs", "batch_size", "learning_rate")] == [RECIPE_VALUE] * 3


def test_every_pipeline_parameter_reaches_a_task(default_spec: Spec):
    """A setting added to RunSettings but used by no step would be a parameter that does nothing."""
    consumed = {
        value["componentInputParameter"]
        for task in default_spec.tasks.values()
        for value in task.get("inputs", {}).get("parameters", {}).values()
        if "componentInputParameter" in value
    }
    assert set(default_spec.pipeline["root"]["inputDefinitions"]["parameters"]) <= consumed


def test_sources_parameter_defaults_to_all_ten_and_check_weights_picks_those_the_loop_trains(default_spec: Spec):
    sources = default_spec.pipeline["root"]["inputDefinitions"]["parameters"]["sources"]
    assert sources["parameterType"] == "LIST"
    assert sources["defaultValue"] == list(SOURCE_NAMES) and len(sources["defaultValue"]) == 10
    weights = default_spec.tasks["check-weights"]["inputs"]["parameters"]
    assert weights["sources"] == {"componentInputParameter": "sources"}
    assert weights["skip_missing"] == {"componentInputParameter": "skip_missing_weights"}
    assert weights["seed"] == {"componentInputParameter": "seed"}
    assert weights["repeats"] == {"componentInputParameter": "repeats"}
    skip = default_spec.pipeline["root"]["inputDefinitions"]["parameters"]["skip_missing_weights"]
    assert (skip["parameterType"], skip["defaultValue"]) == ("BOOLEAN", False)
    check_weights = default_spec.pipeline["components"][default_spec.tasks["check-weights"]["componentRef"]["name"]]
    outputs = check_weights["outputDefinitions"]["parameters"]
    assert {name: o["parameterType"] for name, o in outputs.items()} == {
        "sources": "LIST",
        "skipped": "LIST",
        "trainings": "LIST",
    }
    # check-changes fingerprints what trains, so weights put in later make the next run retrain.
    assert default_spec.tasks["check-changes"]["inputs"]["parameters"]["sources"] == {
        "taskOutputParameter": {"outputParameterKey": "sources", "producerTask": "check-weights"}
    }

    loop_name, loop = default_spec.loop()
    assert loop["taskInfo"]["name"] == "weight-sources"
    channel = loop["parameterIterator"]["items"]["inputParameter"]
    # The loop's items come, through the condition's channel, from check-weights: a training per source
    # whose weights it found in the store and per seed, so none is sent to a GPU without them.
    condition = default_spec.owner(loop_name)
    assert condition["inputs"]["parameters"][channel] == {
        "taskOutputParameter": {"outputParameterKey": "trainings", "producerTask": "check-weights"}
    }
    # Each iteration trains one source with one seed: train's `source` and `seed` are fields of the loop item.
    train = default_spec.tasks["train"]
    assert default_spec.parent["train"] == loop["componentRef"]["name"]
    item = loop["parameterIterator"]["itemInput"]
    for name in ("source", "seed"):
        assert train["inputs"]["parameters"][name] == {
            "componentInputParameter": item,
            "parameterExpressionSelector": f'parseJson(string_value)["{name}"]',
        }
    assert default_spec.parent["evaluate"] == loop["componentRef"]["name"]


def test_repeats_train_every_source_with_each_seed_on_one_shared_split(default_spec: Spec, tmp_path: Path):
    """check-weights' body turns sources x repeats into the loop's items; preprocess, outside the loop,
    draws the one split every training uses, from the run's seed."""
    from components.check_weights import check_weights
    from cxrtl.store import keys, open_store
    from cxrtl.weights import put_weights, write_stand_in

    store = open_store(str(tmp_path / "store"))
    for source in ("imagenet", "moco-v2"):
        put_weights(store, source, write_stand_in(source, tmp_path / f"{source}.pth"), stand_in=True)
    ready, skipped, trainings = check_weights.python_func(
        store=str(tmp_path / "store"), sources=["imagenet", "moco-v2", "chexpert"], skip_missing=True, seed=5, repeats=3
    )
    assert (ready, skipped) == (["imagenet", "moco-v2"], ["chexpert"])
    assert sorted((t["source"], t["seed"]) for t in trainings) == [
        (source, seed) for source in ("imagenet", "moco-v2") for seed in (5, 6, 7)
    ]
    # Each training keeps its checkpoints and model apart; one training per source keeps the run's id.
    assert len({keys.training_run_id("run", t["seed"], 3) for t in trainings}) == 3
    assert keys.training_run_id("run", 5, 1) == "run"

    assert default_spec.tasks["preprocess"]["inputs"]["parameters"]["seed"] == {
        "componentInputParameter": "pipelinechannel--seed"
    }
    assert default_spec.parent["preprocess"] != default_spec.loop()[1]["componentRef"]["name"]
    assert default_spec.tasks["train"]["inputs"]["parameters"]["repeats"] == {
        "componentInputParameter": "pipelinechannel--repeats"
    }
    assert default_spec.tasks["check-changes"]["inputs"]["parameters"]["repeats"] == {
        "componentInputParameter": "repeats"
    }


def test_default_parallelism_is_unlimited_and_the_option_sets_the_limit(default_spec: Spec, tmp_path: Path):
    assert default_spec.loop()[1].get("iteratorPolicy", {}).get("parallelismLimit", 0) == 0
    limited = Spec(pipeline.compile_pipeline(tmp_path / "p3.yaml", ClusterOptions(parallelism=3)))
    assert limited.loop()[1]["iteratorPolicy"]["parallelismLimit"] == 3


def test_retraining_branch_is_conditional_on_check_changes(default_spec: Spec):
    root = {name for name, parent in default_spec.parent.items() if parent == "root"}
    conditions = [name for name in root if "triggerPolicy" in default_spec.tasks[name]]
    assert len(conditions) == 1
    condition = default_spec.tasks[conditions[0]]
    assert root == {"ingest", "check-weights", "check-changes", conditions[0]}
    assert condition["taskInfo"]["name"] == "retrain"
    channel = "pipelinechannel--check-changes-Output"
    assert condition["inputs"]["parameters"][channel] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "check-changes"}
    }
    assert condition["triggerPolicy"]["condition"] == f"inputs.parameter_values['{channel}'] == true"
    branch = condition["componentRef"]["name"]
    assert {default_spec.parent[t] for t in ("preprocess", "promote", "report")} == {branch}
    check = default_spec.pipeline["components"][default_spec.tasks["check-changes"]["componentRef"]["name"]]
    assert check["outputDefinitions"]["parameters"]["Output"]["parameterType"] == "BOOLEAN"
    assert check["outputDefinitions"]["artifacts"]["reason"]["artifactType"]["schemaTitle"] == "system.Markdown"


def test_the_report_hears_which_sources_were_left_out(default_spec: Spec):
    # Through the condition's channel, from check-weights.
    channel = "pipelinechannel--check-weights-skipped"
    assert default_spec.tasks["report"]["inputs"]["parameters"]["skipped"] == {"componentInputParameter": channel}
    assert default_spec.owner("report")["inputs"]["parameters"][channel] == {
        "taskOutputParameter": {"outputParameterKey": "skipped", "producerTask": "check-weights"}
    }


def test_report_and_promote_collect_every_evaluation(default_spec: Spec):
    loop_name, loop = default_spec.loop()
    outputs = default_spec.pipeline["components"][loop["componentRef"]["name"]]["dag"]["outputs"]["artifacts"]
    (collected,) = outputs.values()
    assert collected["artifactSelectors"] == [{"outputArtifactKey": "results", "producerSubtask": "evaluate"}]
    for task in ("promote", "report"):
        results = default_spec.tasks[task]["inputs"]["artifacts"]["results"]["taskOutputArtifact"]
        assert results["producerTask"] == loop_name


# --- resources, retries, caching, images ------------------------------------------------------------


def test_train_asks_for_one_gpu_and_its_cpu_and_memory(default_spec: Spec):
    resources = default_spec.executor("train")["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert resources["accelerator"]["resourceCount"] == "1"
    # The defaults fit a 4-vCPU, 16 GiB single-GPU node (allocatable CPU under 4; docs/cluster.md).
    assert resources["resourceCpuRequest"] == "3" and resources["resourceMemoryRequest"] == "8Gi"
    # On its GPU node, train requires the GPU (cxrtl.device): never a silent fallback to the node's CPU.
    device = default_spec.tasks["train"]["inputs"]["parameters"]["device"]
    assert device == {"runtimeValue": {"constant": "cuda"}}


def test_only_train_gets_a_gpu_and_every_step_has_requests_and_a_memory_limit(default_spec: Spec):
    for task in CONTAINER_TASKS:
        resources = default_spec.executor(task)["resources"]
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"], task
        assert resources["resourceMemoryLimit"], task
        if task != "train":
            assert "accelerator" not in resources, task
            assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == ("2", "8Gi"), task
            assert resources["resourceMemoryLimit"] == "8Gi", task


def test_trains_memory_limit_makes_room_for_its_memory_backed_shm(default_spec: Spec, tmp_path: Path):
    # /dev/shm (medium: Memory) is charged to the pod's memory: the limit is training's memory plus it.
    assert default_spec.executor("train")["resources"]["resourceMemoryLimit"] == "9Gi"
    odd = ClusterOptions(train_memory="1536Mi", shm_size="1Gi")
    assert odd.train_memory_limit == "2560Mi"
    assert ClusterOptions(train_memory="1G", shm_size="1Gi").train_memory_limit == str(10**9 + 2**30)


@pytest.mark.slow
def test_step_sizes_follow_the_options(tmp_path: Path):
    spec = _compile_cli(tmp_path, "--step-cpu", "500m", "--step-memory", "2Gi", "--train-timeout", "2h")
    for task in set(CONTAINER_TASKS) - {"train"}:
        resources = spec.executor(task)["resources"]
        assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == ("500m", "2Gi"), task
        assert resources["resourceMemoryLimit"] == "2Gi", task
    assert spec.platform("train")["activeDeadlineSeconds"] == "7200"


def test_every_step_retries_and_train_backs_off_longer(default_spec: Spec, tmp_path: Path):
    for task in CONTAINER_TASKS:
        assert default_spec.tasks[task]["retryPolicy"]["maxRetryCount"] == 3, task
    assert default_spec.tasks["train"]["retryPolicy"]["backoffDuration"] == "60s"
    assert default_spec.tasks["ingest"]["retryPolicy"]["backoffDuration"] == "30s"
    once = Spec(pipeline.compile_pipeline(tmp_path / "r1.yaml", ClusterOptions(retries=1)))
    assert {once.tasks[t]["retryPolicy"]["maxRetryCount"] for t in CONTAINER_TASKS} == {1}


def test_train_has_a_timeout_and_retries_stay_allowed_for_all_its_attempts(default_spec: Spec, tmp_path: Path):
    # The timeout is the pod's activeDeadlineSeconds, per attempt. Argo stops retrying, and kills a retry,
    # once backoff.maxDuration has passed since the first attempt was created; the SDK's default of one
    # hour would end the retries of any training that ran longer.
    assert default_spec.platform("train")["activeDeadlineSeconds"] == str(12 * 3600)
    window = int(default_spec.tasks["train"]["retryPolicy"]["backoffMaxDuration"].removesuffix("s"))
    assert window == 4 * 12 * 3600 + (60 + 120 + 240) + GPU_QUEUE_ALLOWANCE_S
    for task in set(CONTAINER_TASKS) - {"train"}:
        assert "activeDeadlineSeconds" not in default_spec.platform(task), task

    short = Spec(pipeline.compile_pipeline(tmp_path / "t.yaml", ClusterOptions(train_timeout="90m", retries=1)))
    assert short.platform("train")["activeDeadlineSeconds"] == "5400"
    assert short.tasks["train"]["retryPolicy"]["backoffMaxDuration"] == f"{2 * 5400 + 60 + 24 * 3600}s"


def test_no_task_is_cached(default_spec: Spec):
    # KFP's cache key holds the input artifacts' IDs, new in every run after an uncached ingest: a cache
    # could never hit, so it is off everywhere (components/placement.py says why).
    for task in CONTAINER_TASKS:
        assert not default_spec.tasks[task].get("cachingOptions", {}).get("enableCache", False), task


def test_train_runs_in_the_train_image_and_the_rest_in_the_cpu_image(default_spec: Spec):
    assert default_spec.executor("train")["image"] == image("cxrtl-train")
    for task in set(CONTAINER_TASKS) - {"train"}:
        assert default_spec.executor(task)["image"] == image("cxrtl-cpu"), task


# --- Kubernetes platform spec -----------------------------------------------------------------------


def test_platform_spec_is_the_second_yaml_document(default_spec: Spec):
    documents = list(yaml.safe_load_all(default_spec.text))
    assert len(documents) == 2
    assert documents[1]["platforms"]["kubernetes"] == default_spec.kubernetes


def test_every_step_gets_the_store_from_the_secret_and_config_map(default_spec: Spec):
    for task in CONTAINER_TASKS:
        platform = default_spec.platform(task)
        minio = _secret_env(platform)["cxrtl-minio"]
        assert _key_to_env(minio, "secretKey") == {
            "MINIO_ACCESS_KEY": "MINIO_ACCESS_KEY",
            "MINIO_SECRET_KEY": "MINIO_SECRET_KEY",
        }, task
        assert not minio["optional"], task
        (config,) = platform["configMapAsEnv"]
        assert config["configMapName"] == "cxrtl-config", task
        assert set(_key_to_env(config, "configMapKey")) == {"MINIO_ENDPOINT", "MINIO_SECURE"}, task


def test_only_ingest_gets_the_optional_kaggle_secret(default_spec: Spec):
    kaggle = _secret_env(default_spec.platform("ingest"))["cxrtl-kaggle"]
    assert kaggle["optional"] is True
    # The token kaggle.com's settings page issues now, and the older username and key; each may be absent.
    assert _key_to_env(kaggle, "secretKey") == {
        "KAGGLE_API_TOKEN": "KAGGLE_API_TOKEN",
        "KAGGLE_USERNAME": "KAGGLE_USERNAME",
        "KAGGLE_KEY": "KAGGLE_KEY",
    }
    for task in set(CONTAINER_TASKS) - {"ingest"}:
        assert "cxrtl-kaggle" not in _secret_env(default_spec.platform(task)), task


def test_train_tolerates_the_gpu_taint_and_gets_a_memory_backed_shm(default_spec: Spec):
    train = default_spec.platform("train")
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert train["emptyDirMounts"] == [
        {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "1Gi"}
    ]
    assert "nodeSelector" not in train  # none unless asked for
    for task in set(CONTAINER_TASKS) - {"train"}:
        platform = default_spec.platform(task)
        assert not {"tolerations", "nodeSelector", "emptyDirMounts"} & set(platform), task


def test_cluster_options_set_node_selector_tolerations_and_names(tmp_path: Path):
    options = ClusterOptions(
        gpu_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        gpu_tolerations=[{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"}],
        minio_secret="my-minio",
        kaggle_secret="my-kaggle",
        config_map="my-config",
        shm_size="2Gi",
    )
    spec = Spec(pipeline.compile_pipeline(tmp_path / "custom.yaml", options))
    train = spec.platform("train")
    assert train["nodeSelector"] == {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}
    assert train["tolerations"] == [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoExecute"}]
    assert train["emptyDirMounts"][0]["sizeLimit"] == "2Gi"
    assert set(_secret_env(train)) == {"my-minio"}
    assert train["configMapAsEnv"][0]["configMapName"] == "my-config"
    assert set(_secret_env(spec.platform("ingest"))) == {"my-minio", "my-kaggle"}


@pytest.mark.slow
def test_cli_compile_writes_the_same_pipeline_with_the_cluster_options(tmp_path: Path):
    spec = _compile_cli(
        tmp_path,
        "--gpu-node-selector",
        "cloud.google.com/gke-accelerator=nvidia-l4",
        "--gpu-node-selector",
        "pool=gpu",
        "--gpu-toleration",
        "key=value:NoExecute",
        "--gpu-toleration",
        "nvidia.com/gpu:NoSchedule",
        "--parallelism",
        "2",
        "--minio-secret",
        "other-minio",
    )
    train = spec.platform("train")
    assert train["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "gpu"}
    assert train["tolerations"] == [
        {"key": "key", "operator": "Equal", "value": "value", "effect": "NoExecute"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    assert spec.loop()[1]["iteratorPolicy"]["parallelismLimit"] == 2
    assert "other-minio" in _secret_env(train)
    assert spec.executor("train")["resources"]["accelerator"]["resourceCount"] == "1"


@pytest.mark.slow
def test_cli_compile_defaults_match_the_library_defaults(tmp_path: Path, default_spec: Spec):
    cli = _compile_cli(tmp_path)
    assert cli.pipeline["root"] == default_spec.pipeline["root"]
    assert cli.kubernetes == default_spec.kubernetes
    assert cli.pipeline["deploymentSpec"] == default_spec.pipeline["deploymentSpec"]


@pytest.mark.slow
def test_no_credential_from_the_environment_reaches_the_compiled_yaml(default_spec: Spec, tmp_path: Path):
    cli = _compile_cli(tmp_path, "--gpu-toleration", "key=value:NoExecute")
    for text in (default_spec.text, cli.text):
        for name, marker in MARKERS.items():
            assert marker not in text, name


# --- CLI errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--demo", "--sources", "imagenet,not-a-source"], ["not-a-source"]),
        (["--demo", "--image-size", "16"], ["--image-size", "16"]),
        (["--demo", "--epochs", "0"], ["--epochs"]),
        (["--demo", "--epochs", "-3"], ["--epochs"]),
        (["--demo", "--batch-size", "0"], ["--batch-size"]),
        (["--demo", "--lr", "-0.1"], ["--lr", "must be in (0, 1]"]),
        (["--demo", "--seed", "-1"], ["--seed", "must be in 0..2147483647"]),
        (["--demo", "--promotion-margin", "1"], ["--promotion-margin", "[0, 1)"]),
        (["--demo", "--per-class", "0"], ["--per-class"]),
        (["--sources", "imagenet"], ["--dataset-source"]),
    ],
)
def test_run_rejects_bad_input_with_one_line_before_writing_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], names: list[str]
):
    out = tmp_path / "out"
    refused(capsys, ["run", *args, "--output", str(out)], pipeline.main, PIPELINE, naming=names, nothing_at=[out])


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--parallelism", "-1", "must be 0 or more"),
        ("--retries", "-1", "must be 0 or more"),
        ("--gpu-resource", "", "is not a GPU resource name such as nvidia.com/gpu"),
        ("--gpu-resource", "gpu", "without one, training would get no GPU"),
        ("--step-memory", "8GB", "is not a memory quantity such as 8Gi"),
        ("--train-memory", "lots", "is not a memory quantity"),
        ("--shm-size", "-1Gi", "is not a memory quantity"),
        ("--step-cpu", "two", "is not a CPU quantity such as 2 or 500m"),
        ("--train-cpu", "", "is not a CPU quantity"),
        ("--train-timeout", "0", "must be longer than 0"),
        ("--train-timeout", "1w", "is not a duration such as 12h"),
    ],
)
def test_compile_rejects_bad_cluster_settings_with_one_line_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, says: str
):
    out = tmp_path / "x.yaml"
    argv = ["compile", "-o", str(out), f"{option}={value}"]
    line = refused(capsys, argv, pipeline.main, PIPELINE, naming=[says], nothing_at=[out])
    assert line.startswith(f"pipeline.py: error: {option} ")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--gpu-toleration", "bad"),
        ("--gpu-toleration", "key=value:Sometimes"),
        ("--gpu-node-selector", "no-equals-sign"),
        ("--gpu-node-selector", "=value"),
    ],
)
def test_compile_rejects_malformed_cluster_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
):
    out = tmp_path / "x.yaml"
    assert pipeline.main(["compile", "-o", str(out), option, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pipeline.py: error: compile: argument {option}")
    assert len(err.splitlines()) == 1
    assert not out.exists()


# --- where the KFP UI finds the report ----------------------------------------------------------------


def test_no_pipeline_root_is_compiled_in_so_kfp_keeps_its_own_artifact_store(default_spec: Spec):
    # KFP then takes the root from its own kfp-launcher ConfigMap: its object store, which its UI reads
    # in standalone and multi-user installs alike (the UI reads other namespaces' artifacts only there).
    assert "defaultPipelineRoot" not in default_spec.pipeline
    assert "pipeline_root" not in default_spec.text


def test_the_report_is_an_html_and_a_markdown_artifact_the_ui_renders(default_spec: Spec):
    report = default_spec.pipeline["components"][default_spec.tasks["report"]["componentRef"]["name"]]
    artifacts = report["outputDefinitions"]["artifacts"]
    assert artifacts["html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert artifacts["markdown"]["artifactType"]["schemaTitle"] == "system.Markdown"


# --- what a cluster's pods can read ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "says"),
    [
        ("dataset_source=/data/covid19-radiography-database.zip", "the cluster's pods cannot read this machine's"),
        (
            "dataset_source=file:///data/x.zip",
            "upload the zip to the store (`cxrtl store --store s3://cxrtl put uploads/NAME.zip ZIP",
        ),
        ("dataset_source=./data", "or use dataset_source=kaggle with the optional Kaggle Secret"),
        ("store=/tmp/store", "on a cluster the store must be an s3:// bucket"),
    ],
)
def test_submit_refuses_local_paths_before_any_request(
    param: str, says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    from kfp_api_stub import KfpApiStub

    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with KfpApiStub(via_ui=True) as server:
        argv = ["submit", "--host", server.url, "--param", param]
        line = refused(capsys, argv, pipeline.main, PIPELINE, naming=[says])
    assert line.startswith(f"pipeline.py: error: --param {param}: ")
    assert server.requests == []


@pytest.mark.parametrize("param", ["dataset_source=kaggle", "dataset_source=s3://cxrtl/uploads/covid19.zip"])
def test_submit_takes_kaggle_or_a_zip_in_the_store(
    param: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    from kfp_api_stub import KfpApiStub

    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with KfpApiStub(via_ui=True) as server:
        # the compiled images are the checked-in block's, which no test registry holds (test_cluster asks one)
        assert pipeline.main(["submit", "--host", server.url, "--skip-image-check", "--param", param]) == 0
    [run] = server.runs.values()
    assert run["runtime_config"]["parameters"]["dataset_source"] == param.split("=", 1)[1]
    assert capsys.readouterr().out.splitlines()[-1] == f"{server.url}/#/runs/details/{run['run_id']}"


# --- run settings on a cluster: one definition, the checks `run` makes -------------------------------


@pytest.mark.parametrize(
    ("command", "given", "says"),
    [
        (["submit"], ["--param", "epochs=-3"], "--param epochs must be positive, got -3"),
        (["submit"], ["--param", "recipe=nope"], "--param recipe must be one of paper, recommended, got 'nope'"),
        (["submit"], ["--param", "learning_rate=2"], "--param learning_rate must be in (0, 1], got 2.0"),
        (["submit"], ["--epochs", "-3"], "--epochs must be positive, got -3"),
        (["submit"], ["--sources", "imagenet", "--param", 'sources=["imagenet"]'], "--sources and --param sources"),
        (["schedule", "--cron", "@daily"], ["--param", "epochs=-3"], "--param epochs must be positive, got -3"),
    ],
)
def test_submit_and_schedule_check_run_settings_as_run_does_before_any_request(
    command: list[str], given: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch
):
    from kfp_api_stub import KfpApiStub

    monkeypatch.delenv("KFP_TOKEN", raising=False)
    with KfpApiStub(via_ui=True) as server:
        refused(capsys, [*command, "--host", server.url, *given], pipeline.main, PIPELINE, naming=[says])
    assert server.requests == []


def test_run_gives_the_same_message_for_a_bad_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = ["run", "--demo", "--epochs", "-3", "--output", str(tmp_path / "out")]
    refused(capsys, argv, pipeline.main, PIPELINE, naming=["--epochs must be positive, got -3"])


def test_submit_takes_run_settings_as_options_as_run_does(capsys: pytest.CaptureFixture[str], monkeypatch):
    from kfp_api_stub import KfpApiStub

    monkeypatch.delenv("KFP_TOKEN", raising=False)
    argv = ["--sources", "imagenet,chexpert", "--epochs", "1", "--image-size", "64", "--masked-evaluation"]
    with KfpApiStub(via_ui=True) as server:
        assert pipeline.main(["submit", "--host", server.url, "--skip-image-check", *argv, "--param", "seed=7"]) == 0
    [run] = server.runs.values()
    parameters = run["runtime_config"]["parameters"]
    assert parameters["sources"] == ["imagenet", "chexpert"]
    assert (parameters["epochs"], parameters["image_size"], parameters["masked_evaluation"]) == (1, 64, True)
    assert parameters["seed"] == 7
