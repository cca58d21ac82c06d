"""Issue 25, a full or read-only disk: each write names the path and what was being written in one line and
leaves nothing half-written; a checkpoint that cannot be written leaves training going; a verify of a
read-only store writes nothing. Real file systems: a 2 MiB tmpfs and a read-only bind mount (as root)."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from refusal import refused

from cxrtl.checkpoints import _put
from cxrtl.files import DiskError
from cxrtl.records import ModelMetadata
from cxrtl.store import LocalStore
from cxrtl.train import save_model
from cxrtl.weights import put_weights, write_stand_in

pytestmark = pytest.mark.faults

BIG = 3 * 2**20  # more than the tmpfs holds


def _mount(*argv: str) -> None:
    subprocess.run(["mount", *argv], check=True, capture_output=True)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: what the tests write to it does not fit."""
    mount = tmp_path / "small"
    mount.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount))
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)  # an fd torch leaked stays valid


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(a folder, the same folder mounted read-only)."""
    source, mount = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    _mount("--bind", str(source), str(mount))
    _mount("-o", "remount,ro,bind", str(mount))
    yield source, mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)  # an fd torch leaked stays valid


def _big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(BIG))
    return path


def test_store_put_on_a_full_disk_is_one_line_and_leaves_nothing(full_disk, tmp_path, capsys):
    store = full_disk / "store"
    refused(
        capsys,
        ["store", "put", "data/big.bin", str(_big_file(tmp_path)), "--store", str(store)],
        naming=(str(store / "data" / "big.bin"), "no space left on device", "store object data/big.bin"),
    )
    assert [p for p in store.rglob("*") if p.is_file()] == []


def test_store_and_weights_put_on_a_read_only_store_are_one_line(read_only, tmp_path, capsys):
    _, store = read_only
    refused(
        capsys,
        ["store", "put", "big.bin", str(_big_file(tmp_path)), "--store", str(store)],
        naming=(str(store), "read-only file system"),
    )
    weights = write_stand_in("imagenet", tmp_path / "imagenet.pth")
    refused(
        capsys,
        ["weights", "put", "imagenet", str(weights), "--stand-in", "--store", str(store)],
        naming=(str(store), "read-only file system"),
    )


def test_weights_verify_of_a_read_only_store_writes_nothing(read_only, tmp_path, capsys):
    writable, store = read_only
    put_weights(LocalStore(writable), "imagenet", write_stand_in("imagenet", tmp_path / "i.pth"), stand_in=True)
    before = {p: p.stat().st_mtime_ns for p in writable.rglob("*")}
    from cxrtl.cli import main

    assert main(["weights", "verify", "--store", str(store)]) == 0, capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in writable.rglob("*")} == before


def test_a_model_that_does_not_fit_is_one_line_and_no_folder(full_disk):
    out = full_disk / "model"
    state = {"w": torch.zeros(BIG // 4)}
    metadata = ModelMetadata.from_dict(_metadata(), "test")
    with pytest.raises(DiskError) as caught:
        save_model(out, state, metadata)
    assert str(caught.value) == f"{out}: no space left on device while writing the model"
    assert not out.exists() and list(full_disk.iterdir()) == []


@pytest.mark.parametrize("where", ["store", "TMPDIR"])
def test_a_checkpoint_that_does_not_fit_is_a_warning_and_training_goes_on(
    full_disk, tmp_path, caplog, where, monkeypatch
):
    if where == "TMPDIR":
        monkeypatch.setenv("TMPDIR", str(full_disk))
        monkeypatch.setattr("tempfile.tempdir", None)
        store = LocalStore(tmp_path / "store")
    else:
        store = LocalStore(full_disk / "store")
    with caplog.at_level(logging.WARNING, logger="cxrtl.checkpoints"):
        _put(store, "runs/r/imagenet/checkpoints/epoch-001.pt", {"model": {"w": torch.zeros(BIG // 4)}})
    [warning] = [r.getMessage() for r in caplog.records]
    assert "no space left on device while writing" in warning and "training goes on" in warning
    assert [p for p in full_disk.rglob("*") if p.is_file()] == []
    assert not store.exists("runs/r/imagenet/checkpoints/epoch-001.pt")


def _metadata() -> dict:
    import json

    return json.loads((Path(__file__).parent.parent / "records" / "model.json").read_text())
