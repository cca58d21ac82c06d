"""Where the pipeline's tasks land on a Kubernetes cluster: :class:`ClusterOptions`, its command-line options, and
what applies it to a task (:func:`on_cpu`, :func:`on_gpu`). Compiled into the pipeline; ignored by local runs."""

import argparse
import re
from dataclasses import dataclass, field

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


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    defaults = ClusterOptions()
    g = parser.add_argument_group("cluster settings (compiled into the pipeline)")
    g.add_argument(
        "--parallelism", type=int, default=defaults.parallelism, help="training tasks at once (default 0: all sources)"
    )
    g.add_argument("--gpu-resource", default=defaults.gpu_resource, help="accelerator resource name per train task")
    g.add_argument(
        "--gpu-node-selector",
        type=comma_list(_key_value),
        action="extend",
        metavar="KEY=VALUE[,...]",
        help="node labels for train tasks, e.g. cloud.google.com/gke-accelerator=nvidia-l4",
    )
    g.add_argument(
        "--gpu-toleration",
        type=comma_list(_toleration),
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


def cluster_options(args: argparse.Namespace) -> ClusterOptions:
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
