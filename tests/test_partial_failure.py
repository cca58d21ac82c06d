"""A run with one training forced to fail (its weight file damaged in the store after it was verified): the
other source is evaluated and reported, the run exits non-zero naming the failed one, nothing is promoted;
the rerun, once the file is repaired, trains only the failed source. KFP's artifact folder stays small."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_pipeline_local import run_pipeline

from cxrtl.demo_data import write_demo_dataset
from cxrtl.store import LocalStore, keys
from cxrtl.weights import put_weights, write_stand_in

SOURCES = ("imagenet", "moco-v2")
BROKEN = "moco-v2"
SETTINGS = ["--sources", ",".join(SOURCES), "--recipe", "recommended", "--image-size", "32", "--epochs", "1"]
# KFP's artifact folder of a run: references and what its UI shows, not datasets or models.
MOST_PIPELINE_ROOT_BYTES = 50 * 2**20


def _put_stand_in(store: LocalStore, source: str, tmp: Path) -> Path:
    path = write_stand_in(source, tmp / f"{source}.pth")
    record = put_weights(store, source, path, stand_in=True)
    path.unlink()
    return store.root / keys.weights_key(source, record.sha256)


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _log(out: Path, task: str) -> str:
    return (out / "logs" / f"{task}.log").read_text()


@pytest.mark.slow
def test_a_failed_training_leaves_a_report_of_the_others_and_the_rerun_trains_only_it(tmp_path: Path):
    data = write_demo_dataset(tmp_path / "data", per_class=20, seed=0)
    store = LocalStore(tmp_path / "store")
    _put_stand_in(store, "imagenet", tmp_path)
    weights = _put_stand_in(store, BROKEN, tmp_path)
    good = weights.read_bytes()
    with open(weights, "r+b") as f:  # bit rot after `weights put` verified it: only its training reads it
        f.seek(4096)
        f.write(b"bit rot")
    args = ["--dataset-source", str(data), "--store", str(store.root), *SETTINGS]

    first = run_pipeline(tmp_path / "first", *args)
    assert first.returncode != 0
    status = _log(first.out, "run-status")
    assert f"1 training failed: {BROKEN} (seed 0): " in status and "fails its sha256 check" in status
    (run_id,) = [p.name for p in (store.root / "reports").iterdir()]
    assert f"the report of the others: {store.url}/reports/{run_id}/report.html" in status
    # The terminal shows the others' report and where it is, then the failure last.
    assert f"Report:  {store.url}/reports/{run_id}/report.html" in first.stdout
    assert first.stderr.splitlines()[-1].startswith(f"pipeline.py: error: run-status: 1 training failed: {BROKEN}")
    report = (store.root / "reports" / run_id / "report.txt").read_text()
    assert "imagenet" in report and f"Failed, left out of this report: {BROKEN} (seed 0)" in report
    assert "Promotion: none, 1 training failed" in report
    assert not store.exists("champion/card.json") and not store.exists(keys.last_success_key())
    assert json.loads((store.root / keys.failure_key(run_id, BROKEN)).read_text())["source"] == BROKEN
    assert _bytes(first.out / "pipeline-root") < MOST_PIPELINE_ROOT_BYTES

    weights.unlink()  # repaired: the published file again
    weights.write_bytes(good)
    second = run_pipeline(tmp_path / "second", *args).check()
    assert "run " + run_id + " finished the training with these data, weights and settings" in _log(
        second.out, "train-imagenet"
    )
    assert "epoch 1/1" not in _log(second.out, "train-imagenet")
    assert "epoch 1/1" in _log(second.out, f"train-{BROKEN}")
    new_id = json.loads((store.root / keys.last_success_key()).read_text())["run_id"]
    assert {p.name for p in (store.root / "models" / BROKEN).iterdir()} == {new_id}
