#!/usr/bin/env python
"""The cxrtl Kubeflow pipeline and its command line.

    python pipeline.py compile [-o cxrtl.yaml]       the IR YAML for Kubeflow Pipelines
    python pipeline.py run --demo                    the same pipeline, locally, on synthetic data
    python pipeline.py run --demo --runner docker    ... with each task in its component's image
    python pipeline.py submit --host URL ...         upload, start a run, print its UI link
    python pipeline.py schedule --host URL --cron ...  retrain on a schedule

ingest → check-changes → [if changed] preprocess → for each weight source (in parallel, on GPUs):
train → evaluate; then promote the best model if it beats the champion, and report.
"""

import argparse
import atexit
import builtins
import contextlib
import dataclasses
import inspect
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kfp import compiler, dsl, kubernetes

from cxrtl import signals
from cxrtl.errors import CxrtlError
from cxrtl.settings import TRAIN_RUN_SETTINGS, RunSettings, check_setting, option, value_type

PIPELINE_NAME = "cxrtl"
DEFAULT_STORE = "s3://cxrtl"
# How long a terminated local run waits for its task processes: a train step finishes its step and
# checkpoints (a few seconds on a CPU, a full-size checkpoint included).
TASK_STOP_S = 60
# What the ingest step may take from the optional Kaggle Secret: the API token kaggle.com's settings page
# issues now, or the older username and key.
KAGGLE_SECRET_KEYS = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")


_MEMORY = re.compile(r"([0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|K|M|G|T|P|E)?")  # what the KFP SDK accepts
_MEMORY_UNITS = {"": 1} | {u: 1000 ** (i + 1) for i, u in enumerate("KMGTPE")}
_MEMORY_UNITS |= {f"{u}i": 1024 ** (i + 1) for i, u in enumerate("KMGTPE")}
_CPU = re.compile(r"([0-9]*\.)?[0-9]+m?")
_DURATION = re.compile(r"([0-9]+)([smhd]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# A Kubernetes extended resource name, which a GPU request must be: DOMAIN/NAME.
_RESOURCE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
# Back-off between attempts of a train task: 60 s, then 120 s, 240 s...
TRAIN_BACKOFF_S = 60
TRAIN_BACKOFF_FACTOR = 2
# Argo stops retrying once backoff.maxDuration has passed since the first attempt was created, waiting for
# a GPU node included, and kills later attempts at that moment; this much queueing is allowed on top of
# every attempt's full timeout and the back-offs.
GPU_QUEUE_ALLOWANCE_S = 24 * 3600


@dataclass
class ClusterOptions:
    """Compile-time settings: how the tasks land on the cluster. Ignored by local runs.

    Each field is the option of the same name (``train_timeout`` is ``--train-timeout``); bad values are a
    CxrtlError naming it, when the options are made.
    """

    parallelism: int = 0  # concurrent training tasks; 0 = all sources at once
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: list[dict[str, str]] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    minio_secret: str = "cxrtl-minio"
    kaggle_secret: str = "cxrtl-kaggle"
    config_map: str = "cxrtl-config"
    train_cpu: str = "4"
    train_memory: str = "24Gi"  # for training itself; the memory-backed /dev/shm comes on top, in the limit
    step_cpu: str = "2"
    step_memory: str = "8Gi"  # request and limit of every other step
    shm_size: str = "8Gi"
    retries: int = 3
    train_timeout: str = "12h"  # per attempt; SECONDS or a number with s, m, h or d

    def __post_init__(self) -> None:
        for name in ("parallelism", "retries"):
            if getattr(self, name) < 0:
                raise CxrtlError(f"{_option(name)} must be 0 or more, got {getattr(self, name)}")
        if not _RESOURCE_NAME.fullmatch(self.gpu_resource):
            raise CxrtlError(
                f"{_option('gpu_resource')} {self.gpu_resource!r} is not a GPU resource name such as nvidia.com/gpu "
                "or amd.com/gpu (without one, training would get no GPU)"
            )
        for name in ("train_cpu", "step_cpu"):
            if not _CPU.fullmatch(getattr(self, name)):
                raise CxrtlError(f"{_option(name)} {getattr(self, name)!r} is not a CPU quantity such as 2 or 500m")
        for name in ("train_memory", "step_memory", "shm_size"):
            _memory_bytes(name, getattr(self, name))
        if self.train_timeout_s <= 0:
            raise CxrtlError(f"{_option('train_timeout')} must be longer than 0, got {self.train_timeout!r}")

    @property
    def train_memory_limit(self) -> str:
        """Training's memory plus /dev/shm: the memory-backed volume is charged to the pod's memory."""
        total = _memory_bytes("train_memory", self.train_memory) + _memory_bytes("shm_size", self.shm_size)
        unit = next(u for u in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki", "") if total % _MEMORY_UNITS[u] == 0)
        return f"{total // _MEMORY_UNITS[unit]}{unit}"

    @property
    def train_timeout_s(self) -> int:
        match = _DURATION.fullmatch(self.train_timeout)
        if not match:
            raise CxrtlError(
                f"{_option('train_timeout')} {self.train_timeout!r} is not a duration such as 12h, 90m or 3600"
            )
        return int(match.group(1)) * _SECONDS[match.group(2)]

    @property
    def train_retry_window_s(self) -> int:
        """Argo's backoff.maxDuration for train: every attempt's timeout, the back-offs, and queueing."""
        backoffs = sum(TRAIN_BACKOFF_S * TRAIN_BACKOFF_FACTOR**i for i in range(self.retries))
        return (self.retries + 1) * self.train_timeout_s + backoffs + GPU_QUEUE_ALLOWANCE_S


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _memory_bytes(name: str, text: str) -> int:
    match = _MEMORY.fullmatch(text)
    if not match:
        raise CxrtlError(f"{_option(name)} {text!r} is not a memory quantity such as 8Gi or 512Mi")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


def _use_store(task: dsl.PipelineTask, options: ClusterOptions) -> None:
    """MinIO settings from the cluster: endpoint from the ConfigMap, keys from the Secret, never in the spec."""
    kubernetes.use_config_map_as_env(
        task, options.config_map, {"MINIO_ENDPOINT": "MINIO_ENDPOINT", "MINIO_SECURE": "MINIO_SECURE"}
    )
    kubernetes.use_secret_as_env(
        task, options.minio_secret, {"MINIO_ACCESS_KEY": "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY": "MINIO_SECRET_KEY"}
    )


# Caching is off for every task. KFP's cache key holds the IDs of a task's input artifacts, which are new
# in every run because ingest cannot be cached ("kaggle" names the latest version): preprocess and evaluate
# could never hit. Making preprocess hit would mean cached data living in KFP's artifact store, which KFP
# never checks for deletion (kubeflow/pipelines#7939), while a run that reaches preprocess has changed
# anyway, so a hit would be rare and save minutes of CPU in a run of GPU hours.
def _on_cpu(task: dsl.PipelineTask, options: ClusterOptions) -> dsl.PipelineTask:
    task.set_cpu_request(options.step_cpu)
    task.set_memory_request(options.step_memory).set_memory_limit(options.step_memory)
    task.set_retry(num_retries=options.retries, backoff_duration="30s", backoff_factor=2)
    task.set_caching_options(False)
    _use_store(task, options)
    return task


def _on_gpu(task: dsl.PipelineTask, options: ClusterOptions) -> dsl.PipelineTask:
    task.set_accelerator_type(options.gpu_resource).set_accelerator_limit(1)
    task.set_cpu_request(options.train_cpu)
    task.set_memory_request(options.train_memory).set_memory_limit(options.train_memory_limit)
    # A retried task resumes from its newest checkpoint in the store, so retries are cheap, after a timeout
    # too. Which failures Argo retries is the cluster's setting, not the pipeline's (README, "Retries").
    task.set_retry(
        num_retries=options.retries,
        backoff_duration=f"{TRAIN_BACKOFF_S}s",
        backoff_factor=TRAIN_BACKOFF_FACTOR,
        backoff_max_duration=f"{options.train_retry_window_s}s",
    )
    kubernetes.set_timeout(task, options.train_timeout_s)
    task.set_caching_options(False)
    for key, value in options.gpu_node_selector.items():
        kubernetes.add_node_selector(task, key, value)
    for toleration in options.gpu_tolerations:
        kubernetes.add_toleration(task, **toleration)
    kubernetes.empty_dir_mount(task, "dshm", "/dev/shm", medium="Memory", size_limit=options.shm_size)
    _use_store(task, options)
    return task


def build_pipeline(options: ClusterOptions | None = None):
    # Imported here: the components read their images from the kustomization, and a broken one is
    # then a one-line error of the command rather than an import traceback.
    from components.check_changes import check_changes
    from components.check_weights import check_weights
    from components.evaluate import evaluate
    from components.ingest import ingest
    from components.preprocess import preprocess
    from components.promote import promote
    from components.report import report
    from components.run_status import run_status
    from components.train import train

    options = options or ClusterOptions()

    signature = pipeline_signature()

    # KFP calls the function with the parameters in ``signature``'s order and compiles them from it.
    def cxrtl_pipeline(*values: Any) -> None:
        p = SimpleNamespace(**signature.bind(*values).arguments)
        # "kaggle" names the latest version; the step reuses the archive from the store when version and
        # sha256 are unchanged.
        raw = _on_cpu(ingest(source=p.dataset_source, store=p.store), options)
        kubernetes.use_secret_as_env(
            raw,
            options.kaggle_secret,
            {key: key for key in KAGGLE_SECRET_KEYS},
            optional=True,
        )
        weights = _on_cpu(
            check_weights(
                store=p.store, sources=p.sources, skip_missing=p.skip_missing_weights, seed=p.seed, repeats=p.repeats
            ),
            options,
        )
        # What check-changes fingerprints and train applies on top of the recipe (the seed: each training's).
        training = {name: getattr(p, name) for name in ("epochs", "batch_size", "learning_rate", "repeats")}
        check = _on_cpu(
            check_changes(
                dataset=raw.outputs["Output"],
                store=p.store,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                # What trains: weights put in later make the next run retrain.
                sources=weights.outputs["sources"],
                recipe=p.recipe,
                image_size=p.image_size,
                seed=p.seed,
                force=p.force,
                **training,
            ),
            options,
        )
        with dsl.If(check.output == True, name="retrain"):  # noqa: E712 (a KFP condition, not a test)
            # The prepared data and the models go from step to step by store key (cxrtl.artifacts): KFP's own
            # object store, shared by the cluster and never cleaned, keeps only small references.
            data = _on_cpu(
                preprocess(
                    raw=raw.outputs["raw"],
                    recipe=p.recipe,
                    image_size=p.image_size,
                    seed=p.seed,
                    store=p.store,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                ),
                options,
            )
            # A training per source whose weights check-weights found in the store (not the parameter as
            # given) and per training seed; every one on the one split preprocess drew. A training that fails
            # ends its task successfully with the failure as its output (cxrtl.failures: KFP cannot collect the
            # iterations that finished once one has failed), and the run fails at its end, in run-status.
            with dsl.ParallelFor(
                weights.outputs["trainings"], parallelism=options.parallelism, name="weight-sources"
            ) as training_item:
                model = _on_gpu(
                    train(
                        data=data.outputs["data"],
                        source=training_item.source,
                        seed=training_item.seed,
                        store=p.store,
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                        force=p.force,
                        **training,
                        **{name: getattr(p, name) for name in TRAIN_RUN_SETTINGS},
                    ),
                    options,
                )
                scored = _on_cpu(
                    evaluate(
                        data=data.outputs["data"],
                        model=model.outputs["model"],
                        store=p.store,
                        masked=p.masked_evaluation,
                    ),
                    options,
                )
            decision = _on_cpu(
                promote(
                    data=data.outputs["data"],
                    results=dsl.Collected(scored.outputs["results"]),
                    store=p.store,
                    metric=p.promotion_metric,
                    margin=p.promotion_margin,
                    despite_failures=p.promote_despite_failures,
                ),
                options,
            )
            reported = _on_cpu(
                report(
                    results=dsl.Collected(scored.outputs["results"]),
                    decision=decision.output,
                    skipped=weights.outputs["skipped"],
                    store=p.store,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                ),
                options,
            )
            # Its failure is the run's verdict, not a fault to retry.
            _on_cpu(
                run_status(summary=reported.outputs["Output"], store=p.store, prune=p.prune_store), options
            ).set_retry(num_retries=0)

    cxrtl_pipeline.__signature__ = signature
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="COVID-19 vs Normal chest X-rays: ResNet50 fine-tuned from ten pretrained-weight sources "
        "(Hossain et al. 2022), compared, and the best promoted to champion.",
    )(cxrtl_pipeline)


def pipeline_signature() -> inspect.Signature:
    """The pipeline's parameters: where the data and the store are, then every run setting."""
    defaults = RunSettings().to_pipeline()
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    where = [
        inspect.Parameter("dataset_source", keyword, default="kaggle", annotation=str),
        inspect.Parameter("store", keyword, default=DEFAULT_STORE, annotation=str),
    ]
    settings = [
        inspect.Parameter(f.name, keyword, default=defaults[f.name], annotation=value_type(f))
        for f in dataclasses.fields(RunSettings)
    ]
    return inspect.Signature(where + settings)


def compile_pipeline(output: Path, options: ClusterOptions | None = None) -> Path:
    compiler.Compiler().compile(build_pipeline(options), str(output))
    return output


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _comma_list(parse):
    """An option type taking one item or a comma-separated list of them (as the overlays' gpu.env holds)."""

    def parse_all(text: str) -> list:
        return [parse(item.strip()) for item in text.split(",") if item.strip()]

    return parse_all


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _toleration(text: str) -> dict[str, str]:
    """KEY[=VALUE]:EFFECT, as kubectl taint writes it."""
    spec, sep, effect = text.rpartition(":")
    effects = ("NoSchedule", "PreferNoSchedule", "NoExecute")
    if not sep or not spec or effect not in effects:
        raise argparse.ArgumentTypeError(
            f"expected KEY[=VALUE]:EFFECT with EFFECT one of {', '.join(effects)}, got {text!r}"
        )
    key, has_value, value = spec.partition("=")
    if has_value:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    defaults = ClusterOptions()
    g = parser.add_argument_group("cluster settings (compiled into the pipeline)")
    g.add_argument(
        "--parallelism", type=int, default=defaults.parallelism, help="training tasks at once (default 0: all sources)"
    )
    g.add_argument("--gpu-resource", default=defaults.gpu_resource, help="accelerator resource name per train task")
    g.add_argument(
        "--gpu-node-selector",
        type=_comma_list(_key_value),
        action="extend",
        metavar="KEY=VALUE[,...]",
        help="node labels for train tasks, e.g. cloud.google.com/gke-accelerator=nvidia-l4",
    )
    g.add_argument(
        "--gpu-toleration",
        type=_comma_list(_toleration),
        action="extend",
        metavar="KEY[=VALUE]:EFFECT[,...]",
        help="taints tolerated by train tasks (default nvidia.com/gpu:NoSchedule)",
    )
    g.add_argument(
        "--minio-secret", default=defaults.minio_secret, help="Secret with MINIO_ACCESS_KEY and MINIO_SECRET_KEY"
    )
    g.add_argument(
        "--kaggle-secret",
        default=defaults.kaggle_secret,
        help="optional Secret with KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY)",
    )
    g.add_argument("--config-map", default=defaults.config_map, help="ConfigMap with MINIO_ENDPOINT and MINIO_SECURE")
    g.add_argument("--train-cpu", default=defaults.train_cpu, help=f"CPU request per train task ({defaults.train_cpu})")
    g.add_argument(
        "--train-memory",
        default=defaults.train_memory,
        help=f"memory request per train task ({defaults.train_memory}); its limit adds --shm-size",
    )
    g.add_argument("--shm-size", default=defaults.shm_size, help="memory-backed /dev/shm for training")
    g.add_argument(
        "--train-timeout",
        default=defaults.train_timeout,
        help=f"longest a train attempt may run, e.g. 12h, 90m, 3600 (default {defaults.train_timeout})",
    )
    g.add_argument(
        "--step-cpu", default=defaults.step_cpu, help=f"CPU request of the other steps ({defaults.step_cpu})"
    )
    g.add_argument(
        "--step-memory",
        default=defaults.step_memory,
        help=f"memory request and limit of the other steps ({defaults.step_memory})",
    )
    g.add_argument("--retries", type=int, default=defaults.retries, help="retries per task (default 3)")


def _cluster_options(args: argparse.Namespace) -> ClusterOptions:
    options = ClusterOptions(
        parallelism=args.parallelism,
        gpu_resource=args.gpu_resource,
        gpu_node_selector=dict(args.gpu_node_selector or []),
        minio_secret=args.minio_secret,
        kaggle_secret=args.kaggle_secret,
        config_map=args.config_map,
        train_cpu=args.train_cpu,
        train_memory=args.train_memory,
        step_cpu=args.step_cpu,
        step_memory=args.step_memory,
        shm_size=args.shm_size,
        retries=args.retries,
        train_timeout=args.train_timeout,
    )
    if args.gpu_toleration:
        options.gpu_tolerations = args.gpu_toleration
    return options


def _compile(args: argparse.Namespace) -> None:
    print(compile_pipeline(args.output, _cluster_options(args)))


def _compile_to_temp(args: argparse.Namespace) -> Path:
    folder = tempfile.mkdtemp(prefix="cxrtl-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return compile_pipeline(Path(folder) / "cxrtl.yaml", _cluster_options(args))


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--demo",
        action="store_true",
        help="synthetic data in the Kaggle layout, stand-in weights, 64 px images, 3 epochs",
    )
    p.add_argument(
        "--dataset-source",
        help="'kaggle', s3://BUCKET/KEY of a zip put in the store, a .zip or a folder (required unless --demo)",
    )
    p.add_argument("--store", help="store URL (default: a store folder inside --output)")
    for f in dataclasses.fields(RunSettings):
        kind = value_type(f)
        # Each option is None when not given: _local_arguments then takes the demo's value or the default.
        if kind is bool:
            p.add_argument(
                option(f.name),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f.metadata["help"],
            )
        else:
            p.add_argument(
                option(f.name),
                dest=f.name,
                type=_comma_list(str) if kind is list else kind,
                choices=f.metadata["choices"] or None,
                help=f.metadata["help"],
            )
    p.add_argument("--per-class", type=int, default=80, help="demo images per class (default 80)")
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


def _local_arguments(args: argparse.Namespace) -> dict:
    """The pipeline's arguments for a local run, checked before anything is written."""
    if not args.demo and not args.dataset_source:
        raise CxrtlError("--dataset-source is required without --demo ('kaggle', a .zip or a folder)")
    remote = args.dataset_source == "kaggle" or (args.dataset_source or "").startswith("s3://")
    if args.dataset_source and not remote and not Path(args.dataset_source).exists():
        raise CxrtlError(f"--dataset-source {args.dataset_source}: no such file or folder")
    if args.per_class < 1:
        raise CxrtlError(f"--per-class must be a positive integer, got {args.per_class}")
    defaults = RunSettings.demo() if args.demo else RunSettings()
    settings = {}
    for f in dataclasses.fields(RunSettings):
        given = getattr(args, f.name)  # None when not given
        settings[f.name] = getattr(defaults, f.name) if given is None else check_setting(f.name, given, option(f.name))
    return {"dataset_source": args.dataset_source, **RunSettings(**settings).to_pipeline()}


# The tasks that run once per weight source, inside the ParallelFor: their logs are named TASK-SOURCE.log.
PER_SOURCE_TASKS = {"train", "evaluate"}


def _run(args: argparse.Namespace) -> None:
    from kfp import local

    import local_docker
    from cxrtl.report import REPORT_FILES
    from cxrtl.retrain import last_success
    from cxrtl.store import keys, open_store

    started = time.time()
    if not args.verbose:
        # The progress is the task events; cxrtl's own INFO lines (demo inputs, stand-ins) are --verbose's.
        logging.getLogger().setLevel(logging.WARNING)
    arguments = _local_arguments(args)
    if args.runner == "docker":
        local_docker.check_docker(args.store, args.dataset_source)
    out = (args.output or Path("runs") / time.strftime(f"{'demo' if args.demo else 'local'}-%Y%m%d-%H%M%S")).resolve()
    arguments["store"] = args.store or str(out / "store")
    with _removed_if_left_empty(out):
        store = open_store(arguments["store"])
        if args.demo and not arguments["dataset_source"]:
            demo_zip = _demo_inputs(out, store, arguments["sources"], args.per_class, arguments["seed"])
            arguments["dataset_source"] = str(demo_zip)

        # kfp.local runs two tasks at once: one thread each keeps them from fighting over the cores.
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
        pipeline_root = out / "pipeline-root"
        if args.runner == "docker":
            runner = local_docker.runner(out, pipeline_root, arguments)
        else:
            runner = local.SubprocessRunner(use_venv=False)
        local.init(runner=runner, pipeline_root=str(pipeline_root))
        before = last_success(store)
    _run_logged(arguments, out / "logs", args.verbose, docker_run=out if args.runner == "docker" else None)
    after = last_success(store)
    if after is None or after == before:
        print(f"Nothing changed since run {before['run_id'] if before else '?'}: no retraining (--force retrains).")
        reports = None
    else:
        print(store.get_bytes(keys.report_key(after["run_id"], REPORT_FILES["txt"])).decode())
        reports = f"{store.url.rstrip('/')}/{keys.report_prefix(after['run_id'])}"
    _print_ending(out, arguments["store"], reports, started)


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


def _run_logged(arguments: dict, logs: Path, verbose: bool, docker_run: Path | None) -> None:
    """Run the pipeline with kfp.local, its output routed to a log per task and a line per task event."""
    import local_docker
    from local_log import ANSI, TaskLogs, root_logging_to, tail

    task_logs = TaskLogs(logs, sys.stdout, PER_SOURCE_TASKS, verbose=verbose)
    original_print = builtins.print
    started = time.time()
    try:
        with contextlib.redirect_stdout(task_logs), root_logging_to(task_logs), warnings.catch_warnings():
            if not verbose:
                # kfp.local's notices, one per task: cluster settings a local run cannot apply (requests,
                # retries), and our images' packages used from this environment by the subprocess runner.
                warnings.filterwarnings("ignore", message=r"Task '.*': settings \[", category=UserWarning)
                warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
            try:
                with _stopped_by_signals(task_logs, docker_run):
                    # Retries exist for pre-empted cluster nodes; locally they would only repeat a failure after
                    # a back-off.
                    build_pipeline(ClusterOptions(retries=0))(**arguments)
            finally:
                if docker_run:
                    local_docker.check_exits(docker_run, since=started)
    except (RuntimeError, CxrtlError) as exc:  # RuntimeError: kfp.local's "a task failed"
        task_logs.close()
        for task in task_logs.failed():
            print(f"\n{task.label} failed. The end of its log ({task.path}):", file=sys.stderr)
            print("\n".join(f"    {line}" for line in tail(task.path)), file=sys.stderr)
        message = ANSI.sub("", str(exc))
        raise CxrtlError(message if isinstance(exc, CxrtlError) else f"local run failed: {message}") from None
    finally:
        # kfp.local indents task logs by swapping builtins.print from several threads and can leave it swapped.
        builtins.print = original_print
        if not task_logs.closed:
            task_logs.close()


@contextlib.contextmanager
def _stopped_by_signals(task_logs: Any, docker_run: Path | None):
    """While kfp.local runs: SIGTERM and Ctrl-C end the run's tasks (``docker_run``: its task containers'
    processes; else the task processes), then this process.

    kfp.local's worker threads are joined, never stopped: whatever the main thread does, they go on starting
    the run's remaining tasks. So the signal is passed on to every task (a train step finishes its step and
    checkpoints), those started meanwhile too, and the process ends once none is left."""
    import local_docker

    def stop(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        task_logs.mute()
        print(f"pipeline.py: {name}: stopping the run's tasks (waiting up to {TASK_STOP_S} s)", file=sys.stderr)
        if docker_run:
            running = local_docker.stop_tasks(docker_run, TASK_STOP_S)
        else:
            running = [str(pid) for pid in signals.stop_descendants(os.getpid(), TASK_STOP_S)]
        task_logs.close()
        left = f"; tasks still running: {' '.join(running)}" if running else ""
        print(f"pipeline.py: stopped by {name}{left}; the tasks' logs: {task_logs.folder}", file=sys.stderr, flush=True)
        os._exit(128 + signum)  # the only way past kfp.local's worker threads

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


def _check_cluster_params(params: dict) -> None:
    """What a cluster's pods can read, checked before anything is uploaded: not a path on this machine."""
    store = params.get("store", DEFAULT_STORE)
    if not store.startswith("s3://"):
        raise CxrtlError(f"--param store={store}: on a cluster the store must be an s3:// bucket the pods reach")
    source = params.get("dataset_source", "kaggle")
    if source != "kaggle" and not source.startswith("s3://"):
        raise CxrtlError(
            f"--param dataset_source={source}: the cluster's pods cannot read this machine's files; either upload "
            f"the zip to the store (`cxrtl store --store {store} put ZIP uploads/NAME.zip`, then "
            f"--param dataset_source={store}/uploads/NAME.zip) or use dataset_source=kaggle with the optional "
            "Kaggle Secret (--kaggle-secret)"
        )


def build_parser() -> argparse.ArgumentParser:
    from cluster import add_cluster_arguments

    parser = argparse.ArgumentParser(
        prog="pipeline.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("compile", help="write the pipeline's IR YAML")
    p.add_argument("-o", "--output", type=Path, default=Path("cxrtl.yaml"))
    _add_cluster_options(p)
    p.set_defaults(func=_compile)
    p = sub.add_parser("run", help="run the pipeline locally with kfp.local")
    _add_run_options(p)
    p.set_defaults(func=_run)
    add_cluster_arguments(sub, _compile_to_temp, _check_cluster_params)
    for name in ("submit", "schedule"):
        _add_cluster_options(sub.choices[name])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signals.install()  # SIGTERM takes Ctrl-C's way out
    try:
        return args.func(args) or 0
    except CxrtlError as exc:  # cluster.ClusterError is one too
        print(f"pipeline.py: error: {exc}", file=sys.stderr)
        return 2
    except signals.Terminated:
        print("pipeline.py: terminated (SIGTERM)", file=sys.stderr)
        return signals.EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
