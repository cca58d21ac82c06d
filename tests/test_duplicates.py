import io
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from cxrtl.demo_data import write_demo_dataset
from cxrtl.duplicates import fingerprint, group
from cxrtl.ingest import DATASET_DIR, ingest
from cxrtl.preprocess import preprocess


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def test_the_threshold_separates_distinct_demo_images_from_rescaled_and_recompressed_copies(tmp_path):
    archive = write_demo_dataset(tmp_path, per_class=20, image_size=299)
    with zipfile.ZipFile(archive) as zf:
        images = [Image.open(io.BytesIO(zf.read(n))).convert("L") for n in sorted(zf.namelist()) if "/images/" in n]
    distinct = group([fingerprint(image) for image in images])
    assert distinct.count == len(images) and distinct.near == 0 and distinct.exact == 0

    copies = [
        images[0].resize((1196, 1196), Image.Resampling.BILINEAR).resize((299, 299), Image.Resampling.BILINEAR),
        _jpeg(images[1], 40),
        _jpeg(images[2].resize((254, 254), Image.Resampling.BILINEAR), 40),
        images[3],
    ]
    grouped = group([fingerprint(image) for image in images + copies])
    assert grouped.count == len(images)
    assert [grouped.of[len(images) + k] for k in range(4)] == [grouped.of[k] for k in range(4)]
    assert (grouped.exact, grouped.near) == (1, 3)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    raw = base / "raw"
    ingest(str(write_demo_dataset(base, per_class=20, image_size=64)), raw)
    return raw


# As many copies of each class, so that the paper recipe's balancing keeps them all.
EXACT = (("COVID", 1), ("COVID", 2), ("Normal", 3), ("Normal", 4))
NEAR = (("COVID", 5), ("COVID", 8), ("Normal", 6), ("Normal", 7))


def _plant(raw, tmp_path):
    """A copy of ``raw`` with exact copies (new names) and near copies (stored at twice the size, brighter)."""
    copy = tmp_path / "planted"
    shutil.copytree(raw, copy)
    for name, i in EXACT:
        shutil.copyfile(
            copy / DATASET_DIR / name / "images" / f"{name}-{i}.png",
            copy / DATASET_DIR / name / "images" / f"{name}-copy{i}.png",
        )
    for name, i in NEAR:
        folder = copy / DATASET_DIR / name / "images"
        with Image.open(folder / f"{name}-{i}.png") as image:
            bigger = np.asarray(image.resize((128, 128), Image.Resampling.BILINEAR), dtype=np.float32)
        Image.fromarray(np.clip(bigger * 0.9 + 10, 0, 255).astype(np.uint8)).save(folder / f"{name}-near{i}.png")
    return copy


@pytest.mark.parametrize("recipe", ["paper", "recommended"])
def test_planted_exact_and_near_duplicates_share_a_split_and_are_counted(raw, tmp_path, recipe):
    for seed in (0, 1, 2):
        data = preprocess(
            _plant(raw, tmp_path / str(seed)), tmp_path / f"prepared{seed}", recipe=recipe, image_size=32, seed=seed
        )
        where = dict(zip(data.ids, data.split.tolist(), strict=True))
        for name, i in EXACT:
            assert where[f"{name}/images/{name}-copy{i}.png"] == where[f"{name}/images/{name}-{i}.png"]
        for name, i in NEAR:
            assert where[f"{name}/images/{name}-near{i}.png"] == where[f"{name}/images/{name}-{i}.png"]
        duplicates = data.info.duplicates
        assert (duplicates.exact_duplicate_groups, duplicates.near_duplicate_groups) == (4, 4)
        assert duplicates.images_in_duplicate_groups == 16
        assert duplicates.groups == len(data.ids) - 8


def test_an_image_keeps_its_split_across_dataset_versions_and_seeds(raw, tmp_path):
    """Version 2 drops some images and adds others: every image both hold stays where it was. (A renamed image
    may move: the split follows the dataset's names, which survive re-encoding, see test_seen.py.)"""
    version2 = tmp_path / "version2"
    shutil.copytree(raw, version2)
    covid = version2 / DATASET_DIR / "COVID" / "images"
    normal = version2 / DATASET_DIR / "Normal" / "images"
    for i in range(1, 6):
        (covid / f"COVID-{i}.png").unlink()
    extra = write_demo_dataset(tmp_path / "extra", per_class=8, seed=7, image_size=64)
    with zipfile.ZipFile(extra) as zf:
        for i in range(1, 9):
            (normal / f"Normal-new{i}.png").write_bytes(zf.read(f"{DATASET_DIR}/Normal/images/Normal-{i}.png"))

    def by_content(folder, seed):
        data = preprocess(
            folder, tmp_path / f"prepared-{folder.name}-{seed}", recipe="recommended", image_size=32, seed=seed
        )
        return {data.images[i].tobytes(): int(data.split[i]) for i in range(len(data.ids))}, data

    first, data = by_content(raw, 0)
    assert {int(s) for s in data.split} == {0, 1, 2}
    for folder, seed in ((raw, 1), (version2, 0), (version2, 1)):
        other, _ = by_content(folder, seed)
        shared = set(first) & set(other)
        assert len(shared) >= len(first) - 5
        assert all(first[key] == other[key] for key in shared)
