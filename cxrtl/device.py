"""Which device a training runs on, and why a GPU that was asked for is not there.

``auto`` (local runs) is the GPU when torch sees one, else the CPU. ``cuda`` (the pipeline's train task, placed
on a GPU node) requires one: without it the task stops at once with :func:`diagnose`'s one line, never falling
back to hours of training on the node's CPU. The diagnosis is a pure function of :class:`CudaFacts`, which
:func:`gather` reads from torch, the environment and the driver library."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from cxrtl.errors import CxrtlError

# The NVIDIA Linux driver each CUDA runtime needs at least: "CUDA Toolkit and Corresponding Driver Versions"
# in NVIDIA's CUDA Toolkit release notes (each runtime's GA release). The one table: docker/Dockerfile's
# TORCH_CUDA build argument picks one of these runtimes (cuXYZ), and the failure below prints its minimum.
MIN_DRIVER = {
    "12.6": "560.28.03",
    "12.8": "570.26",
    "13.0": "580.65.06",
}

LIBCUDA = "libcuda.so.1"
# Where the driver's library is: GKE's device plugin mounts the node's driver at /usr/local/nvidia; the NVIDIA
# container toolkit (GPU Operator, EKS, AKS) injects it into the distribution's library folders.
DRIVER_DIRS = (
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
)
VISIBLE_DEVICES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")


@dataclass(frozen=True)
class CudaFacts:
    """What decides whether torch can use a GPU here."""

    runtime: str | None  # the CUDA runtime torch was built for (torch.version.cuda); None: a CPU-only build
    visible: dict[str, str]  # the *_VISIBLE_DEVICES variables that are set
    searched: tuple[str, ...]  # the folders looked in for libcuda.so.1
    libcuda: str | None  # where it was found
    driver_cuda: str | None  # the newest CUDA the driver supports (cuDriverGetVersion), e.g. "12.4"
    device_count: int  # GPUs torch sees


def search_dirs(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    environ = os.environ if environ is None else environ
    dirs = [d for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    return tuple(dict.fromkeys([*dirs, *DRIVER_DIRS]))


def driver_cuda_version(libcuda: str) -> str | None:
    """The CUDA version the driver at ``libcuda`` supports, as "major.minor" (None when it cannot say)."""
    try:
        lib = ctypes.CDLL(libcuda)
        version = ctypes.c_int()
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def gather() -> CudaFacts:
    searched = search_dirs()
    found = next((str(Path(d) / LIBCUDA) for d in searched if (Path(d) / LIBCUDA).exists()), None)
    return CudaFacts(
        runtime=torch.version.cuda,
        visible={k: os.environ[k] for k in VISIBLE_DEVICES if k in os.environ},
        searched=searched,
        libcuda=found,
        driver_cuda=driver_cuda_version(found) if found else None,
        device_count=torch.cuda.device_count() if torch.cuda.is_available() else 0,
    )


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def minimum_driver(runtime: str) -> str:
    return MIN_DRIVER.get(runtime, f"the one NVIDIA's release notes name for CUDA {runtime}")


def diagnose(facts: CudaFacts) -> str | None:
    """Why torch sees no GPU, and what to do, in one line; None when it sees one."""
    if facts.device_count > 0:
        return None
    if facts.runtime is None:
        return f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build (see docker/Dockerfile)"
    hidden = [f"{k}={v!r}" for k, v in facts.visible.items() if v.strip() in ("", "none", "void")]
    if hidden:
        return f"no GPU is visible to this process ({', '.join(hidden)}); request a GPU for the pod or unset it"
    if facts.libcuda is None:
        return (
            f"no {LIBCUDA} found (looked in {', '.join(facts.searched)}): the NVIDIA driver is not mounted into "
            "the container; on GKE add /usr/local/nvidia/lib64 to LD_LIBRARY_PATH, elsewhere install the NVIDIA "
            "container toolkit (GPU Operator)"
        )
    needs = minimum_driver(facts.runtime)
    if facts.driver_cuda is None:
        return (
            f"{facts.libcuda} does not answer cuDriverGetVersion; torch's CUDA {facts.runtime} needs driver >= {needs}"
        )
    if _version(facts.driver_cuda) < _version(facts.runtime):
        return (
            f"the NVIDIA driver ({facts.libcuda}) supports CUDA up to {facts.driver_cuda}, but torch is built for "
            f"CUDA {facts.runtime}, which needs driver >= {needs}: upgrade the node's driver or build the image "
            f"with an older TORCH_CUDA"
        )
    return (
        f"torch sees no GPU although {facts.libcuda} supports CUDA {facts.driver_cuda}: check that the pod "
        "requests a GPU (nvidia.com/gpu) and that nvidia-smi works on the node"
    )


def require_cuda(name: str = "cuda") -> None:
    """Raise a CxrtlError with the diagnosis unless torch sees a GPU (cheap: no data, no model touched)."""
    problem = diagnose(gather())
    if problem:
        raise CxrtlError(f"device {name!r} needs a GPU, but {problem}")


# What Triton (building its GPU launcher) and Inductor call a C compiler: $CC, else the first of these found.
C_COMPILERS = ("cc", "gcc", "clang")


def require_compiler(device: torch.device) -> None:
    """torch.compile's compilers need a C compiler at run time, and Triton on a GPU: without them it would
    fail minutes into the first step, so a run asking for it is refused before anything is loaded. Our
    images have neither (docker/install-packages.sh removes Triton)."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else list(C_COMPILERS)
    if not any(shutil.which(c) for c in candidates):
        raise CxrtlError(
            f"compile=true needs a C compiler on PATH for torch.compile (Triton, Inductor), and none of "
            f"{', '.join(candidates)} is there; install one (e.g. gcc) or set compile=false"
        )
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise CxrtlError(
            "compile=true on a GPU needs Triton for torch.compile, which is not installed; set compile=false"
        )


@dataclass(frozen=True)
class DeviceInfo:
    """What a model was trained on, as model.json records it: CUDA versions are None on the CPU."""

    device_name: str  # e.g. "NVIDIA H100 80GB HBM3", or "cpu"
    cuda_runtime: str | None
    cuda_driver: str | None  # the newest CUDA the driver supports

    @classmethod
    def of(cls, device: torch.device) -> DeviceInfo:
        if device.type != "cuda":
            return cls(device_name="cpu", cuda_runtime=None, cuda_driver=None)
        facts = gather()
        return cls(torch.cuda.get_device_name(device), torch.version.cuda, facts.driver_cuda)
