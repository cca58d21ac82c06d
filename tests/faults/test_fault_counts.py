"""Issue 25, counts capped with a reason: --repeats, --per-class and --seed are refused at the option, in one
line naming the limit, before anything is written or trained; --output naming a file is one line too."""

from __future__ import annotations

from pathlib import Path

import pytest
from refusal import PIPELINE, refused

import pipeline
from cxrtl.demo_data import MAX_PER_CLASS
from cxrtl.settings import MAX_REPEATS, MAX_SEED

pytestmark = pytest.mark.faults

TOO_BIG_SEED = str(2**64)  # 18446744073709551616: accepted before, then train failed after 20 s


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--repeats", "1000"], f"--repeats must be in 1..{MAX_REPEATS} (each repeat trains every source once more)"),
        (["--seed", TOO_BIG_SEED], f"--seed must be in 0..{MAX_SEED}, got {TOO_BIG_SEED}"),
        (["--seed", "-1"], f"--seed must be in 0..{MAX_SEED}"),
        (["--per-class", "100000000"], f"--per-class must be a whole number in 1..{MAX_PER_CLASS}"),
    ],
)
def test_pipeline_run_refuses_counts_past_their_caps_before_writing(tmp_path: Path, capsys, options, named):
    out = tmp_path / "run"
    refused(capsys, ["run", "--demo", "--output", str(out), *options], pipeline.main, PIPELINE, naming=(named,))
    assert not out.exists()


def test_pipeline_run_refuses_an_output_that_is_a_file(tmp_path: Path, capsys):
    out = tmp_path / "run"
    out.write_text("not a folder")
    refused(
        capsys,
        ["run", "--demo", "--output", str(out)],
        pipeline.main,
        PIPELINE,
        naming=(f"--output {out}", "is a file"),
    )
    assert out.read_text() == "not a folder"


def test_demo_data_refuses_a_per_class_past_the_cap(tmp_path: Path, capsys):
    out = tmp_path / "demo"
    refused(
        capsys,
        ["demo-data", str(out), "--per-class", "100000000"],
        naming=("--per-class", str(MAX_PER_CLASS)),
        nothing_at=(out,),
    )
