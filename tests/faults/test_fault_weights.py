"""Issue 14, weights: published checksums pinned and checked on put, NaN and all-zero weights refused."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
from refusal import refused

from cxrtl.errors import CxrtlError
from cxrtl.store import LocalStore
from cxrtl.weights import put_weights, registry, write_stand_in
from cxrtl.weights.registry import get_source

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stand_in("imagenet", tmp_path_factory.mktemp("w") / "imagenet.pth")


@pytest.mark.parametrize(("fill", "named"), [(float("nan"), "NaN or infinite"), (0.0, "every backbone weight is zero")])
def test_weights_check_refuses_nan_and_all_zero_weights(imagenet_file, tmp_path, capsys, fill, named):
    state = torch.load(imagenet_file, weights_only=True)
    broken = tmp_path / "broken.pth"
    torch.save({k: torch.full_like(v, fill) if v.is_floating_point() else v for k, v in state.items()}, broken)
    refused(capsys, ["weights", "check", "imagenet", str(broken)], naming=(str(broken), named))


def test_publishers_checksums_are_pinned():
    assert get_source("imagenet").sha256 == "0676ba61"
    assert get_source("moco-v1").md5 == "b251726a"
    assert get_source("moco-v2").md5 == "a04e12f8"


def test_a_file_without_the_published_md5_is_refused_on_put(tmp_path):
    moco = write_stand_in("moco-v2", tmp_path / "moco.pth.tar")
    with pytest.raises(CxrtlError, match=r"does not have the published md5 a04e12f8\.\.\. of moco-v2"):
        put_weights(LocalStore(tmp_path / "store"), "moco-v2", moco)


def test_a_file_with_the_published_md5_is_stored_as_a_match(tmp_path, monkeypatch):
    moco = write_stand_in("moco-v2", tmp_path / "moco.pth.tar")
    md5 = hashlib.md5(moco.read_bytes()).hexdigest()
    pinned = dataclasses.replace(get_source("moco-v2"), md5=md5[:8])
    monkeypatch.setitem(registry.SOURCES, "moco-v2", pinned)
    stored = put_weights(LocalStore(tmp_path / "store"), "moco-v2", moco)
    record = LocalStore(tmp_path / "store").get_json(f"weights/moco-v2/{stored.sha256}.json")
    assert record["sha256_check"] == "match" and record["published_md5"] == md5[:8]


def test_weights_put_refuses_a_file_already_stored_for_another_source(tmp_path, capsys):
    """Issue 25: one file was accepted for four sources, one without a published checksum."""
    store = tmp_path / "store"
    chestx = write_stand_in("imagenet-chestx-ray14", tmp_path / "ImageNet_chestxray14.pth.tar")
    first = put_weights(LocalStore(store), "imagenet-chestx-ray14", chestx)
    argv = ["weights", "put", "imagenet-chexpert", str(chestx), "--store", str(store)]
    refused(capsys, argv, naming=(str(chestx), first.sha256, "imagenet-chestx-ray14", "--allow-same-file"))
    assert not LocalStore(store).exists("weights/imagenet-chexpert/current.json")

    assert put_weights(LocalStore(store), "imagenet-chestx-ray14", chestx).sha256 == first.sha256  # its own: fine
    again = put_weights(LocalStore(store), "imagenet-chexpert", chestx, allow_same_file=True)
    assert again.sha256 == first.sha256
