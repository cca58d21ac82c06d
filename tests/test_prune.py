"""`cxrtl store prune`: what the retention policy deletes, and what it never does (the champion and its
lineage, weights, datasets, run state, runs still going)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cxrtl.cli import main
from cxrtl.errors import CxrtlError
from cxrtl.prune import PrunePolicy, plan, prune
from cxrtl.store import LocalStore, Store

NOW = 2_000_000_000.0  # a fixed "now": ages below are relative to it
DAY = 86400.0


def _at(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - seconds_ago))


def _run(store: Store, run_id: str, age: float, *, failed: str | None = None, report: bool = True) -> None:
    for source in ("imagenet", "moco-v2"):
        if source == failed:
            store.put_json(f"runs/{run_id}/{source}/failed.json", {"source": source, "failed_at": _at(age)})
            continue
        store.put_json(f"models/{source}/{run_id}/model.json", {"trained_at": _at(age)})
        store.put_bytes(f"models/{source}/{run_id}/model.pt", b"weights")
        store.put_json(f"runs/{run_id}/{source}/identity.json", {})
    if report:
        store.put_bytes(f"reports/{run_id}/report.html", b"<p>")
    store.put_bytes(f"prepared/{run_id}/images.npy", b"pixels")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = LocalStore(tmp_path / "store")
    for i in range(1, 8):  # run-1 (oldest) ... run-7
        _run(store, f"run-{i}", (10 - i) * DAY)
    _run(store, "old-failed", 2 * DAY, failed="moco-v2")
    _run(store, "new-failed", 3600, failed="moco-v2")
    _run(store, "going", 600, report=False)  # still running: no report, no failure
    store.delete("models/imagenet/going/model.json")
    store.delete("models/moco-v2/going/model.json")
    # The champion came from run-1's imagenet; its layout (pointer, versions) is the champion's own business.
    store.put_json("champion/current.json", {"version": "v1"})
    store.put_json("champion/versions/v1/card.json", {"model": {"source": "imagenet", "run_id": "run-1"}})
    store.put_bytes("weights/imagenet/ab.pth", b"w")
    store.put_bytes("datasets/covid/v1/archive.zip", b"z")
    store.put_json("state/last-success.json", {"run_id": "run-7"})
    # Trainings: one finished whose model goes, one finished whose model stays, two unfinished.
    store.put_json("trainings/imagenet/t-gone/done.json", {"model_key": "models/imagenet/run-2/model.pt"})
    store.put_json("trainings/imagenet/t-kept/done.json", {"model_key": "models/imagenet/run-7/model.pt"})
    store.put_json("trainings/moco-v2/t-stale/owner.json", {"run_id": "x", "claimed_at": _at(8 * DAY)})
    store.put_bytes("trainings/moco-v2/t-stale/checkpoints/epoch-001.pt", b"c")
    store.put_json("trainings/moco-v2/t-fresh/owner.json", {"run_id": "new-failed", "claimed_at": _at(3600)})
    store.put_bytes("trainings/moco-v2/t-fresh/checkpoints/epoch-001.pt", b"c")
    return store


def test_the_policy_deletes_old_runs_old_failures_ended_runs_data_and_stale_trainings(store: Store):
    deleted = plan(store, PrunePolicy(keep_runs=5, failed_days=1, stale_days=7), now=NOW).delete
    # run-1 and run-2 are older than the last five finished runs: their models and reports go (but for run-1's
    # imagenet model and report, the champion's lineage)
    assert "models/moco-v2/run-2/model.pt" in deleted and "reports/run-2/report.html" in deleted
    assert "models/moco-v2/run-1/model.pt" in deleted and "reports/run-1/report.html" not in deleted
    # a run with a failed training over a day old: all of it
    assert {k for k in store.list() if "/old-failed/" in k} <= set(deleted)
    assert "models/imagenet/run-2/model.pt" in deleted and "reports/run-2/report.html" in deleted
    assert not [k for k in deleted if k.startswith(("reports/run-3", "models/imagenet/run-3"))]
    # ended runs lose their prepared data, and only that; runs still going keep it
    assert "prepared/run-7/images.npy" in deleted and "prepared/new-failed/images.npy" in deleted
    assert not [k for k in deleted if "going" in k]
    assert "models/moco-v2/new-failed/model.pt" not in deleted  # a failed run's models serve its rerun for a day
    assert deleted["trainings/imagenet/t-gone/done.json"] == "finished training whose model is gone"
    assert "trainings/imagenet/t-kept/done.json" not in deleted
    assert set(k for k in deleted if k.startswith("trainings/moco-v2/")) == {
        "trainings/moco-v2/t-stale/owner.json",
        "trainings/moco-v2/t-stale/checkpoints/epoch-001.pt",
    }


def test_the_champion_its_lineage_weights_datasets_and_state_are_never_deleted(store: Store):
    deleted = plan(store, PrunePolicy(keep_runs=0, failed_days=0, stale_days=0), now=NOW).delete
    assert not [k for k in deleted if k.startswith(("champion/", "weights/", "datasets/", "state/"))]
    # run-1's imagenet model made the champion: it and run-1's report stay; run-1's other model goes
    assert "models/imagenet/run-1/model.pt" not in deleted and "reports/run-1/report.html" not in deleted
    assert "models/moco-v2/run-1/model.pt" in deleted


def test_a_dry_run_deletes_nothing_and_apply_deletes_exactly_the_plan(store: Store):
    policy = PrunePolicy()
    before = store.list()
    planned = prune(store, policy, apply=False, now=NOW)
    assert store.list() == before and planned.delete
    prune(store, policy, apply=True, now=NOW)
    assert store.list() == sorted(set(before) - set(planned.delete))
    assert plan(store, policy, now=NOW).delete == {}  # nothing more to do


def test_cli_prune_lists_by_default_and_deletes_with_apply(store: Store, capsys):
    before = store.list()
    assert main(["store", "--store", str(store.root), "prune"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].endswith(
        "would be deleted (dry run; --apply deletes them); " + f"{len(before) - (len(out) - 1)} kept"
    )
    assert all(line.startswith("would delete ") for line in out[:-1]) and len(out) > 1
    assert store.list() == before
    assert main(["store", "--store", str(store.root), "prune", "--apply"]) == 0
    assert "champion/versions/v1/card.json" in store.list() and len(store.list()) < len(before)


def test_bad_policies_are_refused_naming_the_option():
    with pytest.raises(CxrtlError, match=r"^--keep-runs must be 0 or more, got -1$"):
        PrunePolicy(keep_runs=-1)
    with pytest.raises(CxrtlError, match=r"^--stale-days must be 0 or more days, got nan$"):
        PrunePolicy(stale_days=float("nan"))
