"""``cxrtl bench`` runs its six measurements and prints them as a table and one JSON line. What it measures
is speed, so nothing here asserts a time: only that every figure is there, positive, and consistent."""

from __future__ import annotations

import json
import math

import pytest

from cxrtl.cli import main
from cxrtl.store import LocalStore


@pytest.mark.slow
def test_bench_prints_a_table_and_a_json_line_and_leaves_no_checkpoint(tmp_path, capsys):
    store = tmp_path / "store"
    main(["bench", "--image-size", "32", "--batch-size", "4", "--batches", "1", "--store", str(store)])
    *table, last = capsys.readouterr().out.strip().splitlines()
    result = json.loads(last)

    assert result["device"] == "cpu" and result["compile"] is False and result["image_size"] == 32
    rates = [k for k in result if k.endswith("_per_second")]
    assert len(rates) == 6 and all(result[k] > 0 for k in rates)  # predict's among them
    assert result["ours_first_epoch_seconds"] > 0 and result["checkpoint_mib"] > 300  # model + Adam state
    assert result["peak_host_mib"] > result["checkpoint_mib"] and result["peak_gpu_mib"] is None  # on the CPU
    assert 0 < result["predict_peak_host_mib"] <= result["peak_host_mib"]  # measured first
    assert math.isclose(
        result["ours_over_compute_bound"],
        result["ours_images_per_second"] / result["compute_bound_images_per_second"],
    )
    assert table[0].startswith("cpu, fp32, channels-last on, compile off, 32 px, batch 4, 1 timed batches")
    assert any("ours / study (end to end)" in line for line in table)
    # Every figure of the JSON line is in the table: predict's, the checkpoint and the host memory peaks (the
    # GPU's is "-" on the CPU).
    assert sum("img/s" in line for line in table) == len(rates) and sum("MiB" in line for line in table) == 3
    assert LocalStore(store).list() == []  # the checkpoint written to time it is removed
