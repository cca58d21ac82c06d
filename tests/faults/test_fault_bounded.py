"""Issue 25, bounded inputs: a workbook whose sheet expands to 192 MiB of XML, an archive whose members are
each within the limits but whose whole is not."""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path

import pytest
from bloated import bloated_workbook
from refusal import refused

from cxrtl.demo_data import write_demo_dataset
from cxrtl.ingest import DATASET_DIR, ingest
from cxrtl.metadata import metadata_file
from cxrtl.preprocess import preprocess
from cxrtl.xlsx import MAX_PART_BYTES, SheetError, read_rows

pytestmark = pytest.mark.faults

_JUST_OVER = MAX_PART_BYTES // 2**20 + 1  # MiB; the reviewer's 192 MiB is measured by measure_bloated_xlsx.py


@pytest.fixture(scope="module")
def clean_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("data")
    ingest(str(write_demo_dataset(base, per_class=10, image_size=32)), base / "raw")
    return base / "raw"


def test_a_sheet_expanding_past_the_cap_is_refused_by_name(tmp_path):
    path = bloated_workbook(tmp_path / "a.xlsx", [["FILE NAME", "URL"], ["COVID-1", "https://a.example"]], _JUST_OVER)
    assert path.stat().st_size < 2**20  # small on disk: the cap is on what it expands to
    with pytest.raises(
        SheetError, match=rf"xl/worksheets/sheet1.xml expands to more than {MAX_PART_BYTES // 2**20} MiB"
    ):
        read_rows(path)


def test_preprocess_goes_on_without_collections_when_a_sheet_is_bloated(clean_raw, tmp_path, caplog):
    raw = tmp_path / "raw"
    shutil.copytree(clean_raw, raw)
    sheet = metadata_file(raw / DATASET_DIR, "Normal")
    bloated_workbook(
        sheet, [["FILE NAME", "URL"]] + [[f"NORMAL-{i}", "https://a.example"] for i in range(1, 11)], _JUST_OVER
    )
    with caplog.at_level(logging.WARNING, logger="cxrtl.metadata"):
        data = preprocess(raw, tmp_path / "prepared", recipe="paper", image_size=32)
    assert data.collections is None and data.info.collections is None
    [warning] = [r.getMessage() for r in caplog.records if r.name == "cxrtl.metadata"]
    assert str(sheet) in warning and "expands to more than" in warning


@pytest.mark.slow
def test_a_zip_of_900_members_of_1_mib_of_zeros_is_refused_before_extracting(tmp_path, capsys):
    bomb = tmp_path / "bomb.zip"
    zeros = bytes(2**20)  # each member exactly at the per-member threshold: only the whole gives it away
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(1, 901):
            zf.writestr(f"{DATASET_DIR}/COVID/images/COVID-{i}.png", zeros)
    assert bomb.stat().st_size < 2 * 2**20
    out = tmp_path / "parent" / "raw"
    out.parent.mkdir()
    refused(
        capsys,
        ["ingest", "--source", str(bomb), "--out", str(out)],
        naming=("bomb.zip", "the archive, whose 900 members unpack", f"{900 * 2**20} bytes", "zip bomb", "--max-ratio"),
    )
    assert not list(out.parent.iterdir()), "something was kept"
