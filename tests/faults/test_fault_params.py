"""Issue 14, bad parameters: refused at once (before torch and the data load), in one line, nothing written."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from refusal import PIPELINE, refused

import pipeline
from cxrtl.data import MAX_IMAGE_SIZE
from cxrtl.errors import CxrtlError
from cxrtl.settings import MAX_SEED, RunSettings

pytestmark = pytest.mark.faults

# A missing --data folder would fail too, but only after torch has loaded: each refusal must come first.
TRAIN = ["train", "--data", "no-such-data", "--weights", "imagenet", "--out"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--lr", "inf"], "--lr: must be a finite number, got inf"),
        (["--lr", "nan"], "--lr: must be a finite number"),
        (["--epochs", "0"], "--epochs: must be positive"),
        (["--run-id", "../../escape"], "--run-id: must be 1 to 128 letters"),
        (["--seed", str(2**64)], f"--seed: must be in 0..{MAX_SEED}, got {2**64}"),  # issue 25: was 20 s in
    ],
)
@pytest.mark.slow
def test_cxrtl_train_refuses_bad_parameters_before_torch_loads(tmp_path: Path, options, named):
    out = tmp_path / "model"
    code = (
        "import sys; from cxrtl.cli import main; status = main(sys.argv[1:]); "
        "print('torch' in sys.modules); sys.exit(status)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *TRAIN, str(out), *options], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == "False", "torch was imported before the refusal"
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("cxrtl: error: train: ") and named in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("command", [["demo-data"], ["preprocess", "--raw", "r", "--out"], ["bench", "--json"]])
@pytest.mark.parametrize("size", ["0", str(MAX_IMAGE_SIZE + 1), "100000"])
def test_image_sizes_out_of_range_are_refused(tmp_path: Path, capsys, command, size):
    out = tmp_path / "out"
    argv = [*command, str(out)] if command[-1] in ("demo-data", "--out") else command
    refused(capsys, [*argv, "--image-size", size], naming=("--image-size", str(MAX_IMAGE_SIZE)), nothing_at=(out,))


def test_demo_data_removes_the_folder_it_made_when_writing_fails(tmp_path: Path, monkeypatch):
    from cxrtl import demo_data

    def fail(*_):
        raise MemoryError

    monkeypatch.setattr(demo_data, "synthetic_chest", fail)
    with pytest.raises(MemoryError):
        demo_data.write_demo_dataset(tmp_path / "new", per_class=1, image_size=32)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--image-size", "0"], "--image-size must be a whole number from 32"),
        (["--image-size", "100000"], "--image-size must be a whole number from 32"),
        (["--lr", "inf"], "--lr must be a finite number, got inf"),
        (["--promotion-margin", "nan"], "--promotion-margin must be in [0, 1)"),
    ],
)
def test_pipeline_run_refuses_bad_parameters_before_writing(tmp_path: Path, capsys, options, named):
    out = tmp_path / "run"
    refused(capsys, ["run", "--demo", "--output", str(out), *options], pipeline.main, PIPELINE, naming=(named,))
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("learning_rate", math.inf, "must be a finite number, got inf"),
        ("learning_rate", math.nan, "must be a finite number, got nan"),
        ("learning_rate", 2.0, "must be in (0, 1], got 2.0"),
        ("promotion_margin", math.nan, "must be in [0, 1), got nan"),
    ],
)
def test_run_settings_refuse_non_finite_and_out_of_range_values(name: str, value: float, message: str):
    with pytest.raises(CxrtlError) as caught:
        RunSettings(**{name: value})
    assert str(caught.value) == f"{name} {message}"


def test_pipeline_run_that_fails_before_writing_leaves_no_output_folder(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)
    out = tmp_path / "run"
    argv = ["run", "--dataset-source", str(tmp_path), "--store", "s3://artifacts", "--output", str(out)]
    refused(capsys, argv, pipeline.main, PIPELINE, naming=("MINIO_ENDPOINT is not set",))
    assert not out.exists()
