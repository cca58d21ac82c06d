import logging
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from cxrtl.demo_data import DEMO_COLLECTIONS, write_demo_dataset
from cxrtl.ingest import DATASET_DIR, ingest
from cxrtl.preprocess import preprocess
from cxrtl.xlsx import SheetError, read_rows, workbook_bytes

NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def test_a_workbook_round_trips_and_shared_strings_are_read(tmp_path):
    rows = [["FILE NAME", "URL"], ["COVID-1", "https://a.example/x?y=1&z=<2>"], ["COVID-2", ""]]
    (tmp_path / "a.xlsx").write_bytes(workbook_bytes(rows))
    assert read_rows(tmp_path / "a.xlsx") == rows

    # What Excel writes: text in a shared-strings table, cells referring to it by index, a number, a gap.
    with zipfile.ZipFile(tmp_path / "a.xlsx") as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    parts["xl/sharedStrings.xml"] = f'<sst xmlns="{NS}"><si><t>FILE NAME</t></si><si><t>URL</t></si></sst>'.encode()
    parts["xl/worksheets/sheet1.xml"] = (
        f'<worksheet xmlns="{NS}"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="C1" t="s"><v>1</v></c>'
        '</row><row r="2"><c r="A2"><v>42</v></c></row></sheetData></worksheet>'
    ).encode()
    with zipfile.ZipFile(tmp_path / "b.xlsx", "w") as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    assert read_rows(tmp_path / "b.xlsx") == [["FILE NAME", "", "URL"], ["42"]]

    (tmp_path / "c.xlsx").write_bytes(b"PK not really")
    with pytest.raises(SheetError, match="not a readable xlsx workbook"):
        read_rows(tmp_path / "c.xlsx")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    ingest(str(write_demo_dataset(base, per_class=12, image_size=64)), base / "raw")
    return base / "raw"


def test_collections_and_masks_round_trip_from_the_demo_data(raw, tmp_path):
    data = preprocess(raw, tmp_path / "prepared", recipe="paper", image_size=48)
    expected = [DEMO_COLLECTIONS[i.split("/")[0]][int(i.rsplit("-", 1)[1].removesuffix(".png")) % 4] for i in data.ids]
    assert data.collections == expected
    table = data.info.collections
    assert table["COVID"] == {
        "https://demo.example/hospital-b/screening": 3,
        "https://demo.example/hospital-a/covid-ward": 9,
    }
    assert set(table["Normal"]) == {
        "https://demo.example/hospital-b/screening",
        "https://demo.example/public-archive/pneumonia",
    }
    assert data.info.masks == "ok"

    loaded = type(data).load(tmp_path / "prepared")
    assert loaded.collections == expected
    index = data.ids.index("COVID/images/COVID-3.png")
    masks = loaded.lung_masks(np.array([index]))
    with Image.open(raw / DATASET_DIR / "COVID" / "masks" / "COVID-3.png") as stored:
        assert stored.size == (55, 55)  # 256/299 of the image, as in the real data
        expected_mask = np.asarray(stored.convert("L").resize((48, 48), Image.Resampling.BILINEAR)) >= 128
    assert masks.shape == (1, 48, 48) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0], expected_mask)
    assert 0.1 < masks.mean() < 0.6


def _broken(raw, tmp_path, name):
    copy = tmp_path / name
    shutil.copytree(raw, copy)
    return copy, copy / DATASET_DIR / "Normal.metadata.xlsx"


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("missing", "no such file"),
        ("malformed", "not a readable xlsx workbook (BadZipFile: File is not a zip file)"),
        ("no-url-column", "no 'FILE NAME' and 'URL' columns in the first row"),
        ("not-matching", "no row for 1 of the 12 images (first: Normal-5.png)"),
    ],
)
def test_bad_metadata_is_one_warning_naming_the_file_and_the_run_goes_on(raw, tmp_path, caplog, case, problem):
    copy, sheet = _broken(raw, tmp_path, case)
    if case == "missing":
        sheet.unlink()
    elif case == "malformed":
        sheet.write_bytes(b"FILE NAME,URL\nNormal-1,x\n")
    elif case == "no-url-column":
        sheet.write_bytes(workbook_bytes([["FILE NAME", "SOURCE"], ["Normal-1", "x"]]))
    else:
        rows = read_rows(sheet)
        sheet.write_bytes(workbook_bytes([row for row in rows if row[0] != "Normal-5"]))
    caplog.set_level(logging.WARNING, logger="cxrtl")
    data = preprocess(copy, tmp_path / "prepared", recipe="paper", image_size=32)
    warnings = [r.getMessage() for r in caplog.records if "metadata" in r.getMessage()]
    assert warnings == [f"{sheet}: {problem}; going on without the breakdown by collection"]
    assert data.collections is None and data.info.collections is None
    assert len(data.ids) == 24 and data.info.masks == "ok"


def test_a_mask_of_another_shape_disables_only_the_masks(raw, tmp_path, caplog):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    Image.new("L", (64, 32)).save(copy / DATASET_DIR / "COVID" / "masks" / "COVID-2.png")
    caplog.set_level(logging.WARNING, logger="cxrtl")
    data = preprocess(copy, tmp_path / "prepared", recipe="paper", image_size=32)
    assert data.packed_masks is None and data.lung_masks(np.array([0])) is None
    assert "COVID-2.png is 64x32 for an image of 64x64" in data.info.masks
    assert "the masked evaluation cannot run" in caplog.text
    assert data.collections is not None and len(data.ids) == 24
