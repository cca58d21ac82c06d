"""Where the pipeline's tasks land on a Kubernetes cluster: :class:`ClusterOptions`, its command-line options, and
what applies it to a task (:func:`on_cpu`, :func:`on_gpu`). Compiled into the pipeline; ignored by local runs."""

import argparse
import re
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Any

from kfp import dsl, kubernetes

from cxrtl.cli.options import comma_list
from cxrtl.errors import CxrtlError

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


def _non_negative(value: int) -> str | None:
    return None if value >= 0 else f"must be 0 or more, got {value}"


def _gpu_resource(value: str) -> str | None:
    if _RESOURCE_NAME.fullmatch(value):
        return None
    return (
        f"{value!r} is not a GPU resource name such as nvidia.com/gpu or amd.com/gpu "
        "(without one, training would get no GPU)"
    )


def _cpu(value: str) -> str | None:
    return None if _CPU.fullmatch(value) else f"{value!r} is not a CPU quantity such as 2 or 500m"


def _memory(value: str) -> str | None:
    return None if _MEMORY.fullmatch(value) else f"{value!r} is not a memory quantity such as 8Gi or 512Mi"


def _duration(value: str) -> str | None:
    match = _DURATION.fullmatch(value)
    if not match:
        return f"{value!r} is not a duration such as 12h, 90m or 3600"
    return None if _seconds(match) > 0 else f"must be longer than 0, got {value!r}"


def _seconds(match: re.Match) -> int:
    return int(match.group(1)) * _SECONDS[match.group(2)]


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


def _about(
    help: str,
    *,
    check: Callable[[Any], str | None] | None = None,
    item: Callable[[str], Any] | None = None,
    collect: Callable[[list], Any] = list,
    metavar: str | None = None,
    option: str | None = None,
) -> dict[str, Any]:
    """An option's metadata. ``help`` may name the default as %(default)s; ``check``: what is wrong with a value,
    or None; ``item``: for an option of comma-separated, repeatable items, the parser of one item, and
    ``collect`` what makes the field's value of them; ``option``: its name (default: --NAME)."""
    return {"help": help, "check": check, "item": item, "collect": collect, "metavar": metavar, "option": option}


@dataclass
class ClusterOptions:
    """Compile-time settings: how the tasks land on the cluster. Ignored by local runs.

    Each field is an option of ``compile``, ``submit`` and ``schedule`` (``train_timeout`` is ``--train-timeout``),
    made from the field's metadata; bad values are a CxrtlError naming the option, when the options are made.
    A new option is a field here plus the code that applies it (:func:`on_cpu`, :func:`on_gpu`).
    """

    parallelism: int = field(
        default=0, metadata=_about("training tasks at once (default 0: all sources)", check=_non_negative)
    )
    gpu_resource: str = field(
        default="nvidia.com/gpu", metadata=_about("accelerator resource name per train task", check=_gpu_resource)
    )
    gpu_node_selector: dict[str, str] = field(
        default_factory=dict,
        metadata=_about(
            "node labels for train tasks, e.g. cloud.google.com/gke-accelerator=nvidia-l4 (default: none)",
            item=_key_value,
            collect=dict,
            metavar="KEY=VALUE[,...]",
        ),
    )
    gpu_tolerations: list[dict[str, str]] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        metadata=_about(
            "taints tolerated by train tasks (default nvidia.com/gpu:NoSchedule)",
            item=_toleration,
            metavar="KEY[=VALUE]:EFFECT[,...]",
            option="--gpu-toleration",
        ),
    )
    minio_secret: str = field(
        default="cxrtl-minio", metadata=_about("Secret with MINIO_ACCESS_KEY and MINIO_SECRET_KEY")
    )
    kaggle_secret: str = field(
        default="cxrtl-kaggle",
        metadata=_about("optional Secret with KAGGLE_API_TOKEN (or KAGGLE_USERNAME and KAGGLE_KEY)"),
    )
    config_map: str = field(default="cxrtl-config", metadata=_about("ConfigMap with MINIO_ENDPOINT and MINIO_SECURE"))
    # Sized to fit the common single-GPU nodes of 4 vCPUs and 16 GiB (g4dn.xlarge, g5.xlarge, g2-standard-4),
    # whose allocatable CPU is under 4: cxrtl bench's peak of training at 224 px, batch 32 is 4.4 GiB of host
    # memory on a CPU (docs/performance.md), where the activations are host memory too; on a GPU they are not.
    train_cpu: str = field(default="3", metadata=_about("CPU request per train task (%(default)s)", check=_cpu))
    # For training itself; the memory-backed /dev/shm comes on top, in the limit.
    train_memory: str = field(
        default="8Gi",
        metadata=_about("memory request per train task (%(default)s); its limit adds --shm-size", check=_memory),
    )
    # Training reads its batches in-process (no data-loader workers, which would use /dev/shm): 1 Gi is headroom.
    shm_size: str = field(default="1Gi", metadata=_about("memory-backed /dev/shm for training", check=_memory))
    # Per attempt.
    train_timeout: str = field(
        default="12h",
        metadata=_about("longest a train attempt may run, e.g. 12h, 90m, 3600 (default %(default)s)", check=_duration),
    )
    step_cpu: str = field(default="2", metadata=_about("CPU request of the other steps (%(default)s)", check=_cpu))
    step_memory: str = field(
        default="8Gi", metadata=_about("memory request and limit of the other steps (%(default)s)", check=_memory)
    )
    retries: int = field(default=3, metadata=_about("retries per task (default %(default)s)", check=_non_negative))

    def __post_init__(self) -> None:
        for f in fields(self):
            problem = f.metadata["check"] and f.metadata["check"](getattr(self, f.name))
            if problem:
                raise CxrtlError(f"{_option(f)} {problem}")

    @property
    def train_memory_limit(self) -> str:
        """Training's memory plus /dev/shm: the memory-backed volume is charged to the pod's memory."""
        total = _memory_bytes(self.train_memory) + _memory_bytes(self.shm_size)
        unit = next(u for u in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki", "") if total % _MEMORY_UNITS[u] == 0)
        return f"{total // _MEMORY_UNITS[unit]}{unit}"

    @property
    def train_timeout_s(self) -> int:
        return _seconds(_DURATION.fullmatch(self.train_timeout))

    @property
    def train_retry_window_s(self) -> int:
        """Argo's backoff.maxDuration for train: every attempt's timeout, the back-offs, and queueing."""
        backoffs = sum(TRAIN_BACKOFF_S * TRAIN_BACKOFF_FACTOR**i for i in range(self.retries))
        return (self.retries + 1) * self.train_timeout_s + backoffs + GPU_QUEUE_ALLOWANCE_S


def _option(f: Field) -> str:
    return f.metadata["option"] or "--" + f.name.replace("_", "-")


def _memory_bytes(text: str) -> int:
    match = _MEMORY.fullmatch(text)
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


def use_store(task: dsl.PipelineTask, options: ClusterOptions) -> None:
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
def on_cpu(task: dsl.PipelineTask, options: ClusterOptions) -> dsl.PipelineTask:
    task.set_cpu_request(options.step_cpu)
    task.set_memory_request(options.step_memory).set_memory_limit(options.step_memory)
    task.set_retry(num_retries=options.retries, backoff_duration="30s", backoff_factor=2)
    task.set_caching_options(False)
    use_store(task, options)
    return task


def on_gpu(task: dsl.PipelineTask, options: ClusterOptions) -> dsl.PipelineTask:
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
    use_store(task, options)
    return task


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """An option per :class:`ClusterOptions` field, with its help; :func:`cluster_options` makes the options."""
    defaults = ClusterOptions()
    g = parser.add_argument_group("cluster settings (compiled into the pipeline)")
    for f in fields(ClusterOptions):
        about = f.metadata
        if about["item"]:
            # None when not given: the field keeps its default.
            g.add_argument(
                _option(f),
                dest=f.name,
                type=comma_list(about["item"]),
                action="extend",
                metavar=about["metavar"],
                help=about["help"],
            )
        else:
            g.add_argument(_option(f), dest=f.name, type=f.type, default=getattr(defaults, f.name), help=about["help"])


def cluster_options(args: argparse.Namespace) -> ClusterOptions:
    """The options ``args`` give (CxrtlError naming the option at fault)."""
    given = {f.name: getattr(args, f.name) for f in fields(ClusterOptions)}
    return ClusterOptions(
        **{
            f.name: f.metadata["collect"](given[f.name]) if f.metadata["item"] else given[f.name]
            for f in fields(ClusterOptions)
            if given[f.name] is not None
        }
    )
