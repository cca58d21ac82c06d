"""The GPU-required device policy: each diagnosis from given facts, and the real failure on this GPU-less machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cxrtl.device import DRIVER_DIRS, MIN_DRIVER, CudaFacts, DeviceInfo, diagnose, gather, search_dirs
from cxrtl.engine import resolve_device

GPU_LESS = CudaFacts(
    runtime="13.0",
    visible={},
    searched=("/opt/lib", *DRIVER_DIRS),
    libcuda="/usr/local/nvidia/lib64/libcuda.so.1",
    driver_cuda="13.0",
    device_count=0,
)


def with_(**changes: object) -> CudaFacts:
    return CudaFacts(**{**GPU_LESS.__dict__, **changes})


def test_a_visible_gpu_needs_no_diagnosis() -> None:
    assert diagnose(with_(device_count=1)) is None


def test_a_cpu_only_torch_is_named() -> None:
    assert "CPU-only build" in diagnose(with_(runtime=None))


@pytest.mark.parametrize("variable", ["CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"])
@pytest.mark.parametrize("value", ["", "none"])
def test_hidden_devices_are_named(variable: str, value: str) -> None:
    problem = diagnose(with_(visible={variable: value}))
    assert f"{variable}={value!r}" in problem and "no GPU is visible" in problem


def test_a_listed_device_is_not_hidden() -> None:
    assert "no GPU is visible" not in diagnose(with_(visible={"NVIDIA_VISIBLE_DEVICES": "all"}))


def test_a_missing_driver_names_every_folder_searched() -> None:
    problem = diagnose(with_(libcuda=None, driver_cuda=None))
    assert "no libcuda.so.1 found" in problem
    for folder in GPU_LESS.searched:
        assert folder in problem


def test_an_old_driver_names_the_minimum_for_torchs_runtime() -> None:
    problem = diagnose(with_(driver_cuda="12.4"))
    assert "supports CUDA up to 12.4" in problem and "CUDA 13.0" in problem
    assert f"driver >= {MIN_DRIVER['13.0']}" in problem


def test_a_new_enough_driver_points_at_the_pod() -> None:
    problem = diagnose(with_(driver_cuda="13.1"))
    assert "requests a GPU" in problem and "driver >=" not in problem


def test_the_search_starts_with_ld_library_path_and_includes_gke() -> None:
    dirs = search_dirs({"LD_LIBRARY_PATH": "/a:/usr/local/nvidia/lib64::/b"})
    assert dirs[:3] == ("/a", "/usr/local/nvidia/lib64", "/b")
    assert len(dirs) == len(set(dirs)) and "/usr/local/nvidia/lib" in dirs


def test_the_driver_table_holds_torchs_runtime() -> None:
    # The installed torch's runtime must have its minimum driver in the one table, or the failure cannot name it.
    assert torch.version.cuda is None or torch.version.cuda in MIN_DRIVER


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure where no GPU is visible")
def test_auto_is_the_cpu_and_cuda_is_refused_here() -> None:
    assert resolve_device("auto").type == "cpu"
    assert DeviceInfo.of(resolve_device("auto")) == DeviceInfo("cpu", None, None)
    assert diagnose(gather()) is not None


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure where no GPU is visible")
def test_cxrtl_train_on_cuda_without_a_gpu_fails_in_one_line_before_reading_data(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.monotonic()
    args = ["train", "--data", str(tmp_path / "no-data"), "--recipe", "paper", "--weights", "imagenet"]
    args += ["--out", str(tmp_path / "out"), "--device", "cuda", "--store", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "cxrtl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert time.monotonic() - started < 60
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxrtl: error: device 'cuda' needs a GPU, but "), done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_compile_without_a_c_compiler_is_refused_before_reading_data(tmp_path: Path) -> None:
    # PATH holds the Python only: none of cc, gcc, clang is found, as in the slim image.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env |= {"PATH": str(bin_dir), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = ["train", "--data", str(tmp_path / "no-data"), "--recipe", "paper", "--weights", "imagenet"]
    args += ["--out", str(tmp_path / "out"), "--device", "cpu", "--compile", "--store", str(tmp_path)]
    done = subprocess.run([sys.executable, "-m", "cxrtl", *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxrtl: error: compile=true needs a C compiler"), done.stderr
    assert not (tmp_path / "out").exists()


def train_component_without_data(tmp_path: Path, device: str, compile: bool = False):
    """The train component's Model after a call whose data does not exist: the checks must come first."""
    from kfp.dsl import Dataset, Model

    from components.train import train

    model = Model(uri=str(tmp_path / "model"))
    settings = {"epochs": 0, "batch_size": 0, "learning_rate": 0.0, "seed": 0, "precision": "auto"}
    settings |= {"channels_last": True, "cudnn_benchmark": True, "compile": compile, "data_on_device": True}
    settings |= {"checkpoint_minutes": 10.0, "keep_checkpoints": 0, "repeats": 1, "force": False}
    data = Dataset(uri=str(tmp_path / "no-data"))
    train.python_func(data=data, source="imagenet", store=str(tmp_path / "store"), run_id="r1", model=model,
                      device=device, **settings)  # fmt: skip
    return model


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure where no GPU is visible")
def test_the_train_component_on_cuda_without_a_gpu_records_the_one_line_before_fetching_data(tmp_path: Path) -> None:
    model = train_component_without_data(tmp_path, "cuda")
    assert model.metadata["failed"].startswith("device 'cuda' needs a GPU, but ")
    assert "\n" not in model.metadata["failed"]
    assert (tmp_path / "model" / "failed.json").exists()


def test_the_train_component_refuses_compile_without_a_compiler_before_fetching_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-compilers"))  # as in our images: no cc, gcc or clang
    monkeypatch.delenv("CC", raising=False)
    model = train_component_without_data(tmp_path, "cpu", compile=True)
    assert model.metadata["failed"].startswith("compile=true needs a C compiler on PATH")
