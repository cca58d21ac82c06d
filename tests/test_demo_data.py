import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from refusal import refused

from cxrtl.cli import main
from cxrtl.demo_data import DEMO_COLLECTIONS, write_demo_dataset
from cxrtl.errors import CxrtlError
from cxrtl.ingest import CLASSES, DATASET_DIR
from cxrtl.xlsx import read_rows


def _read(zf: zipfile.ZipFile, name: str, size: int | None = None) -> np.ndarray:
    image = Image.open(io.BytesIO(zf.read(name)))
    if size is not None:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def test_layout_names_and_image_format(tmp_path):
    archive = write_demo_dataset(tmp_path, per_class=3, seed=1, image_size=64)
    assert archive == tmp_path / "covid19-radiography-database.zip"
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        expected = {
            f"{DATASET_DIR}/{c}/{kind}/{c}-{i}.png" for c in CLASSES for kind in ("images", "masks") for i in (1, 2, 3)
        }
        sheets = {f"{DATASET_DIR}/{c}.metadata.xlsx" for c in CLASSES}
        assert names == expected | sheets | {f"{DATASET_DIR}/README.md.txt"}
        image = Image.open(io.BytesIO(zf.read(f"{DATASET_DIR}/Viral Pneumonia/images/Viral Pneumonia-3.png")))
        assert (image.mode, image.size) == ("L", (64, 64))
        mask = _read(zf, f"{DATASET_DIR}/COVID/masks/COVID-1.png")
        assert set(np.unique(mask)) == {0, 255} and mask.shape == (55, 55)  # 256/299 of the image, as in Kaggle's
        (tmp_path / "sheet.xlsx").write_bytes(zf.read(f"{DATASET_DIR}/COVID.metadata.xlsx"))
    assert read_rows(tmp_path / "sheet.xlsx") == [
        ["FILE NAME", "FORMAT", "SIZE", "URL"],
        *([f"COVID-{i}", "PNG", "64*64", DEMO_COLLECTIONS["COVID"][i % 4]] for i in (1, 2, 3)),
    ]


def test_same_arguments_same_bytes_and_seed_matters(tmp_path):
    first = write_demo_dataset(tmp_path / "a", per_class=2, seed=3, image_size=64).read_bytes()
    again = write_demo_dataset(tmp_path / "b", per_class=2, seed=3, image_size=64).read_bytes()
    other = write_demo_dataset(tmp_path / "c", per_class=2, seed=4, image_size=64).read_bytes()
    assert first == again
    assert first != other


def test_mean_lung_brightness_separates_covid_from_normal_after_downscaling(tmp_path):
    archive = write_demo_dataset(tmp_path, per_class=25, seed=0, image_size=128)
    means = {}
    with zipfile.ZipFile(archive) as zf:
        for c in ("COVID", "Normal"):
            values = []
            for i in range(1, 26):
                image = _read(zf, f"{DATASET_DIR}/{c}/images/{c}-{i}.png", size=32).astype(float)
                lungs = _read(zf, f"{DATASET_DIR}/{c}/masks/{c}-{i}.png", size=32) > 127
                values.append(image[lungs].mean())
            means[c] = np.array(values)
    assert means["COVID"].min() > means["Normal"].max() + 30
    assert means["Normal"].std() > 0  # images vary, not one picture repeated


@pytest.mark.parametrize("per_class", [0, -1])
def test_per_class_must_be_positive(tmp_path, per_class):
    with pytest.raises(CxrtlError, match="per_class"):
        write_demo_dataset(tmp_path, per_class=per_class)
    assert not any(tmp_path.iterdir())


def test_cli(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path), "--per-class", "1", "--image-size", "32"]) == 0
    assert (tmp_path / "covid19-radiography-database.zip").is_file()
    other = tmp_path / "other"
    refused(capsys, ["demo-data", str(other), "--per-class", "0"], naming=["--per-class"], nothing_at=[other])


def test_ingested_demo_data_is_recorded_as_synthetic_not_under_the_kaggle_name(tmp_path):
    from cxrtl.ingest import DEMO_SLUG, ingest

    result = ingest(str(write_demo_dataset(tmp_path / "demo", per_class=2, image_size=32)), tmp_path / "raw")
    assert result.slug == DEMO_SLUG and "synthetic" in result.summary()
