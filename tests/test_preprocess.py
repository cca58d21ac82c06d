import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image
from refusal import refused

from cxrtl.cli import main
from cxrtl.data import PreparedData
from cxrtl.demo_data import write_demo_dataset
from cxrtl.errors import CxrtlError
from cxrtl.ingest import DATASET_DIR, ingest
from cxrtl.metrics import clopper_pearson
from cxrtl.preprocess import MIN_TEST_IMAGES_PER_CLASS, preprocess

COVID, NORMAL = 10, 15  # more Normal than COVID, as in the real data


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """An ingested folder with 10 COVID and 15 Normal images (COVID trimmed from a 15-per-class demo set).

    Demo seed 7: the recommended recipe's name-based split gives these 25 images both classes in every split.
    """
    base = tmp_path_factory.mktemp("data")
    raw = base / "raw"
    ingest(str(write_demo_dataset(base, per_class=NORMAL, seed=7, image_size=64)), raw)
    for i in range(COVID + 1, NORMAL + 1):
        (raw / DATASET_DIR / "COVID" / "images" / f"COVID-{i}.png").unlink()
    return raw


def _counts(data: PreparedData, split: str) -> tuple[int, int]:
    labels = data.labels[data.indices(split)]
    return int(np.sum(labels == 1)), int(np.sum(labels == 0))


def test_paper_recipe_balances_and_splits_80_20_stratified(raw, tmp_path):
    out = tmp_path / "prepared"
    data = preprocess(raw, out, recipe="paper", image_size=32, seed=0)

    assert data.images.shape == (2 * COVID, 32, 32) and data.images.dtype == np.uint8
    assert _counts(data, "train") == (8, 8)
    assert _counts(data, "val") == (0, 0)
    assert _counts(data, "test") == (2, 2)
    assert sum(i.startswith("COVID/images/") for i in data.ids) == COVID

    loaded = PreparedData.load(out)
    np.testing.assert_array_equal(loaded.images, data.images)
    np.testing.assert_array_equal(loaded.split, data.split)
    info = loaded.info
    assert info == data.info
    assert (info.recipe, info.image_size, info.seed) == ("paper", 32, 0)
    assert info.counts["train"] == {"COVID": 8, "Normal": 8}
    assert info.available == {"COVID": COVID, "Normal": NORMAL}
    assert info.skipped_count == 0
    assert info.dataset == json.loads((raw / "ingest.json").read_text())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_seed_picks_the_normal_subsample_and_the_split(raw, tmp_path):
    a = preprocess(raw, tmp_path / "a", image_size=32, seed=0)
    b = preprocess(raw, tmp_path / "b", image_size=32, seed=0)
    c = preprocess(raw, tmp_path / "c", image_size=32, seed=1)
    assert a.ids == b.ids and np.array_equal(a.split, b.split)
    assert a.ids != c.ids or not np.array_equal(a.split, c.split)


def test_recommended_recipe_uses_all_images_split_from_their_names_whatever_the_seed(raw, tmp_path):
    data = preprocess(raw, tmp_path / "prepared", recipe="recommended", image_size=32, seed=0)
    other = preprocess(raw, tmp_path / "other", recipe="recommended", image_size=32, seed=1)
    assert len(data.ids) == COVID + NORMAL
    assert data.ids == other.ids and np.array_equal(data.split, other.split)
    assert all(min(_counts(data, s)) >= 1 for s in ("train", "val", "test"))


def test_a_split_that_would_lack_a_class_takes_the_nearest_image_of_it_and_nothing_else_moves(raw, tmp_path):
    data = preprocess(raw, tmp_path / "prepared", recipe="recommended", image_size=32)
    fewer = tmp_path / "raw"
    shutil.copytree(raw, fewer)
    val_normal = [data.ids[i] for i in data.indices("val") if data.labels[i] == 0]
    for image_id in val_normal:
        (fewer / DATASET_DIR / image_id).unlink()
    again = preprocess(fewer, tmp_path / "fewer", recipe="recommended", image_size=32)
    assert all(min(_counts(again, s)) >= 1 for s in ("train", "val", "test"))
    before = dict(zip(data.ids, data.split.tolist(), strict=True))
    moved = [i for i, s in zip(again.ids, again.split.tolist(), strict=True) if before[i] != s]
    assert len(moved) == 1 and moved[0].startswith("Normal/") and again.split[again.ids.index(moved[0])] == 1


def test_images_are_resized_grayscale_of_the_source(raw, tmp_path):
    data = preprocess(raw, tmp_path / "prepared", recipe="recommended", image_size=48)
    index = data.ids.index("Normal/images/Normal-7.png")
    with Image.open(raw / DATASET_DIR / data.ids[index]) as source:
        expected = np.asarray(source.convert("L").resize((48, 48), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(data.images[index], expected)
    assert data.labels[index] == 0 and data.labels[data.ids.index("COVID/images/COVID-10.png")] == 1


def test_corrupt_images_are_skipped_and_counted(raw, tmp_path, caplog):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    # In the larger class: the smaller one has the fewest images a class may have (MIN_IMAGES_PER_CLASS).
    images = copy / DATASET_DIR / "Normal" / "images"
    (images / "Normal-3.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    truncated = (images / "Normal-4.png").read_bytes()
    (images / "Normal-4.png").write_bytes(truncated[: len(truncated) // 2])

    caplog.set_level(logging.WARNING, logger="cxrtl.preprocess")
    data = preprocess(copy, tmp_path / "prepared", recipe="recommended", image_size=32)
    assert len(data.ids) == COVID + NORMAL - 2
    assert data.info.skipped_count == 2
    assert data.info.skipped == ["Normal/images/Normal-3.png", "Normal/images/Normal-4.png"]
    assert "skipped 2 unreadable image(s)" in caplog.text


def test_image_size_must_be_at_least_32(raw, tmp_path):
    with pytest.raises(CxrtlError, match="image_size must be a whole number from 32 to 1024, got 16"):
        preprocess(raw, tmp_path / "prepared", image_size=16)
    assert not (tmp_path / "prepared").exists()


def test_missing_raw_folder(tmp_path):
    with pytest.raises(CxrtlError, match=f"raw folder {tmp_path / 'nope'} does not exist"):
        preprocess(tmp_path / "nope", tmp_path / "prepared")


def test_folder_without_the_layout(tmp_path):
    (tmp_path / "raw" / "pictures").mkdir(parents=True)
    with pytest.raises(CxrtlError, match="no COVID-19_Radiography_Dataset/COVID/images/ folder"):
        preprocess(tmp_path / "raw", tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_rerun_replaces_an_earlier_output(raw, tmp_path):
    out = tmp_path / "prepared"
    preprocess(raw, out, recipe="recommended", image_size=32)
    preprocess(raw, out, recipe="paper", image_size=32)
    assert PreparedData.load(out).info.recipe == "paper"


def test_cli(raw, tmp_path, capsys):
    out = tmp_path / "prepared"
    argv = ["-q", "preprocess", "--raw", str(raw), "--out", str(out), "--image-size", "32"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"20 images of 32x32 written to {out}" in printed
    assert "duplicates kept within one split: 0 exact and 0 near-duplicate group(s), 0 images" in printed
    data = PreparedData.load(out)
    sizes = ", ".join(
        f"{s} {len(data.indices(s))} (Normal {_counts(data, s)[1]}, COVID {_counts(data, s)[0]})"
        for s in ("train", "val", "test")
    )
    assert f"split sizes by class: {sizes}\n" in printed
    other = tmp_path / "other"
    line = refused(capsys, ["-q", "preprocess", "--raw", str(raw), "--out", str(other), "--image-size", "16"])
    assert line == (
        "cxrtl: error: preprocess: argument --image-size: must be a whole number from 32 to 1024, got 16 "
        "(see cxrtl preprocess --help)"
    )
    assert not other.exists()


def test_the_small_test_split_threshold_is_where_the_report_s_interval_can_no_longer_span_half_the_range():
    def widest(n):
        low, high = clopper_pearson(np.arange(n + 1), n)
        return float(np.max(high - low))

    assert widest(MIN_TEST_IMAGES_PER_CLASS) <= 0.5 < widest(MIN_TEST_IMAGES_PER_CLASS - 1)


def test_a_class_with_few_test_images_is_warned_in_one_line_and_recorded(raw, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cxrtl.preprocess"):
        data = preprocess(raw, tmp_path / "prepared", recipe="recommended", image_size=32)
    covid, normal = _counts(data, "test")
    assert covid < MIN_TEST_IMAGES_PER_CLASS and normal < MIN_TEST_IMAGES_PER_CLASS
    warned = [r.getMessage() for r in caplog.records if "small test split" in r.getMessage()]
    assert warned == [
        f"small test split: {normal} Normal and {covid} COVID test image(s); below {MIN_TEST_IMAGES_PER_CLASS} a "
        "class's 95 % intervals in the report can be more than 0.5 wide, so its figures say little"
    ]
    assert data.info.small_test_classes == {"Normal": normal, "COVID": covid}
    assert data.info.min_test_images_per_class == MIN_TEST_IMAGES_PER_CLASS


def test_no_warning_when_every_class_has_enough_test_images(tmp_path, caplog):
    raw = tmp_path / "raw"
    ingest(str(write_demo_dataset(tmp_path, per_class=80, seed=1, image_size=32)), raw)
    with caplog.at_level(logging.WARNING, logger="cxrtl.preprocess"):
        data = preprocess(raw, tmp_path / "prepared", recipe="recommended", image_size=32)
    assert min(_counts(data, "test")) >= MIN_TEST_IMAGES_PER_CLASS
    assert not [r for r in caplog.records if "small test split" in r.getMessage()]
    assert data.info.small_test_classes == {}
