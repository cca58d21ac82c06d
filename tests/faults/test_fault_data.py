"""Issue 14, bad data: unreadable images, classes too small to answer the question, 16-bit images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from refusal import refused

from cxrtl.demo_data import write_demo_dataset
from cxrtl.ingest import DATASET_DIR, ingest
from cxrtl.preprocess import MIN_IMAGES_PER_CLASS, preprocess, to_gray8

pytestmark = pytest.mark.faults

PER_CLASS = 12


@pytest.fixture(scope="module")
def clean_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("data")
    raw = base / "raw"
    ingest(str(write_demo_dataset(base, per_class=PER_CLASS, image_size=64)), raw)
    return raw


def _copy_with_unreadable(clean_raw: Path, dest: Path, covid_broken: int) -> Path:
    shutil.copytree(clean_raw, dest)
    for i in range(1, covid_broken + 1):
        (dest / DATASET_DIR / "COVID" / "images" / f"COVID-{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return dest


@pytest.mark.parametrize("covid_broken", [PER_CLASS, PER_CLASS - MIN_IMAGES_PER_CLASS + 1])
def test_preprocess_refuses_a_class_left_too_small_by_unreadable_images(clean_raw, tmp_path, capsys, covid_broken):
    raw = _copy_with_unreadable(clean_raw, tmp_path / "raw", covid_broken)
    out = tmp_path / "prepared"
    line = refused(
        capsys,
        ["preprocess", "--raw", str(raw), "--out", str(out), "--image-size", "64"],
        naming=(str(raw), f"{PER_CLASS - covid_broken} readable COVID image(s) of {PER_CLASS}"),
        nothing_at=(out,),
    )
    assert f"at least {MIN_IMAGES_PER_CLASS}" in line
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_paper_balances_the_classes_after_dropping_unreadable_images(clean_raw, tmp_path):
    raw = _copy_with_unreadable(clean_raw, tmp_path / "raw", covid_broken=2)
    data = preprocess(raw, tmp_path / "prepared", recipe="paper", image_size=64)
    assert int(np.sum(data.labels == 1)) == int(np.sum(data.labels == 0)) == PER_CLASS - 2
    assert data.info.skipped_count == 2


def test_every_split_holds_every_class(clean_raw, tmp_path):
    data = preprocess(clean_raw, tmp_path / "prepared", recipe="recommended", image_size=64)
    assert all(n > 0 for split in data.info.counts.values() for n in split.values()), data.info.counts


def test_ingest_counts_only_readable_images(clean_raw, tmp_path):
    raw = _copy_with_unreadable(clean_raw, tmp_path / "raw", covid_broken=3)
    result = ingest(str(raw / DATASET_DIR), tmp_path / "again")
    assert result.counts["COVID"] == PER_CLASS - 3 and result.unreadable["COVID"] == 3
    assert result.counts["Normal"] == PER_CLASS and result.unreadable["Normal"] == 0
    record = json.loads((tmp_path / "again" / "ingest.json").read_text())
    assert record["counts"]["COVID"] == PER_CLASS - 3 and record["unreadable"]["COVID"] == 3


def test_a_16_bit_ramp_is_scaled_to_8_bits_not_clipped(tmp_path):
    ramp = np.arange(256 * 256, dtype=np.uint16).reshape(256, 256)  # 0 .. 65535, every value once
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        gray = np.asarray(to_gray8(image))
    np.testing.assert_array_equal(gray, np.rint(ramp * (255 / 65535)).astype(np.uint8))
    assert np.mean(gray == 255) < 0.01  # clipping made 99.6 % white


def test_8_bit_images_are_unchanged(tmp_path):
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = tmp_path / "ramp8.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as image:
        np.testing.assert_array_equal(np.asarray(to_gray8(image)), ramp)
