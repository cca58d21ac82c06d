"""What steps hand each other by store key (cxrtl.artifacts), and a failed training handed on (cxrtl.failures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrtl import artifacts
from cxrtl.errors import CxrtlError
from cxrtl.failures import RunFailed, TrainingFailure, check_run, read_failure, write_failure
from cxrtl.store import LocalStore


def test_a_folder_goes_by_key_and_comes_back_checked(tmp_path: Path):
    store = LocalStore(tmp_path / "store")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"weights")
    (folder / "model.json").write_text("{}")
    ref = artifacts.publish(store, folder, "models/imagenet/run-1/")
    ref.write(tmp_path / "artifact")
    assert (tmp_path / "artifact" / "stored.json").stat().st_size < 1000  # all KFP's store gets
    read = artifacts.StoredFolder.read(tmp_path / "artifact")
    assert read == ref and read.metadata() == {"store_key": "models/imagenet/run-1/", "sha256": ref.sha256, "size": 9}
    fetched = artifacts.fetch(store, read, tmp_path / "fetched")
    assert (fetched / "model.pt").read_bytes() == b"weights"

    store.put_bytes("models/imagenet/run-1/model.pt", b"other weights")  # replaced since it was handed on
    with pytest.raises(CxrtlError, match=r"models/imagenet/run-1/model\.pt is not the file this step was handed"):
        artifacts.fetch(store, read, tmp_path / "again")
    store.delete("models/imagenet/run-1/model.pt")
    with pytest.raises(CxrtlError, match=r"models/imagenet/run-1/model\.pt is gone"):
        artifacts.fetch(store, read, tmp_path / "again")


def test_a_reference_that_is_not_one_is_one_line(tmp_path: Path):
    (tmp_path / "stored.json").write_text("not json")
    with pytest.raises(CxrtlError, match=r"stored\.json: not a reference to files in the store \(JSONDecodeError\)"):
        artifacts.StoredFolder.read(tmp_path)


def test_a_failure_is_handed_on_and_fails_the_run_naming_it(tmp_path: Path):
    failure = TrainingFailure.of("moco-v2", 0, "run-1", CxrtlError("weights/moco-v2/x.pth fails its sha256 check"))
    write_failure(tmp_path / "model", failure)
    assert read_failure(tmp_path / "model") == failure and read_failure(tmp_path) is None
    other = TrainingFailure.of("imagenet", 1, "run-1-seed1", RuntimeError("CUDA out of memory.\nmore"))
    assert other.error == "RuntimeError: CUDA out of memory."
    check_run([], "s3://b/reports/run-1/report.html")  # nothing failed: nothing to say
    with pytest.raises(RunFailed) as raised:
        check_run([failure, other], "s3://b/reports/run-1/report.html")
    assert str(raised.value) == (
        "2 trainings failed: moco-v2 (seed 0): weights/moco-v2/x.pth fails its sha256 check; "
        "imagenet (seed 1): RuntimeError: CUDA out of memory.; the report of the others: "
        "s3://b/reports/run-1/report.html. A rerun with the same data, weights and settings trains only these"
    )
