"""A model is never silently scored on images it has seen, when a new release re-encodes every image (issue 27):
the split follows the dataset's names, and the seen check the pictures (content hash or thumbnail)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from reencode import RE_ENCODINGS, re_encode

from cxrtl.data import PreparedData
from cxrtl.duplicates import decode_thumbs, image_key
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import evaluate
from cxrtl.ingest import ingest
from cxrtl.preprocess import preprocess
from cxrtl.recipes import TrainConfig
from cxrtl.seen import SEEN_FILE, Seen, seen_in
from cxrtl.train import train

SIZE = 64


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_zip, stand_in_store):
    """One epoch of the recommended recipe (best epoch chosen on the validation split) on the demo data."""
    root = tmp_path_factory.mktemp("seen")
    ingest(str(demo_zip), root / "raw")
    preprocess(root / "raw", root / "data", recipe="recommended", image_size=SIZE)
    config = TrainConfig.from_recipe("recommended", epochs=1, batch_size=16, device="cpu")
    train(root / "data", "imagenet", root / "model", config, stand_in_store, "test-seen")
    yield root
    for key in stand_in_store.list("models/imagenet/test-seen/") + stand_in_store.list("runs/test-seen/"):
        stand_in_store.delete(key)


def _keys(data: PreparedData, split: str) -> set[str]:
    return {image_key(data.ids[i]) for i in data.indices(split)}


@pytest.mark.slow
@pytest.mark.parametrize("how", sorted(RE_ENCODINGS))
def test_a_re_encoded_release_keeps_every_split_and_its_seen_images_are_found(trained, tmp_path, how):
    first = PreparedData.load(trained / "data")
    re_encode(trained / "raw", tmp_path / "raw", how)
    second = preprocess(tmp_path / "raw", tmp_path / "data", recipe="recommended", image_size=SIZE)
    assert not set(second.hashes) & set(first.hashes) or how == "16bit"  # the pixels changed
    assert len(set(second.hashes) - set(first.hashes)) > len(second.ids) // 2
    for split in ("train", "val", "test"):
        assert _keys(second, split) == _keys(first, split)

    # Its own test split: nothing seen, scored.
    checks = evaluate(tmp_path / "data", trained / "model", tmp_path / "eval", device="cpu").checks
    assert (checks.trained_on_test_images, checks.seen_test_images) == (0, 0)

    # The same release with every image in the test split (a split drawn otherwise): exactly the images the model
    # trained on or chose its epoch on are found, by the key that survived the re-encoding.
    smuggled = tmp_path / "smuggled"
    shutil.copytree(tmp_path / "data", smuggled)
    np.save(smuggled / "split.npy", np.full(len(second.ids), 2, dtype=np.uint8))
    everything = np.arange(len(second.ids))
    seen = Seen.read(trained / "model" / SEEN_FILE)
    found = {image_key(second.ids[i]) for i in everything[seen_in(second, everything, seen.any)]}
    assert found == _keys(first, "train") | _keys(first, "val")
    trained_on, chosen_on = len(_keys(first, "train")), len(_keys(first, "val"))
    with pytest.raises(
        CxrtlError,
        match=f"was trained on {trained_on} of the {len(second.ids)} test images and "
        f"chose its epoch on {chosen_on} more \\(\\d+ of them re-encoded",
    ):
        evaluate(smuggled, trained / "model", tmp_path / "refused", device="cpu")
    assert not (tmp_path / "refused").exists()
    allowed = evaluate(smuggled, trained / "model", tmp_path / "allowed", device="cpu", allow_seen=True).checks
    changed = sum(
        h not in set(first.hashes)
        for h, key in zip(second.hashes, map(image_key, second.ids), strict=True)
        if key in found
    )
    assert changed > 0
    assert allowed.trained_on_test_images == trained_on
    assert allowed.seen_test_images == trained_on + chosen_on
    assert allowed.seen_test_images_changed == changed


def test_a_record_without_thumbnails_finds_exact_copies_only_and_says_so(trained, tmp_path, caplog):
    """A model trained before thumbnails were kept: its record still serves, for unchanged images only."""
    record = json.loads((trained / "model" / SEEN_FILE).read_text())
    assert len(decode_thumbs(record["thumbs"]["trained"])) == len(record["trained"])
    old = tmp_path / SEEN_FILE
    old.write_text(json.dumps({"trained": record["trained"], "selected": record["selected"]}))
    seen = Seen.read(old)
    assert seen is not None and seen.trained.thumbs is None
    first = PreparedData.load(trained / "data")
    everything = np.arange(len(first.ids))
    re_encode(trained / "raw", tmp_path / "raw", "resize")
    second = preprocess(tmp_path / "raw", tmp_path / "data", recipe="recommended", image_size=SIZE)
    with caplog.at_level(logging.WARNING, logger="cxrtl.seen"):
        assert seen_in(first, everything, seen.trained).sum() == len(first.indices("train"))
        assert seen_in(second, everything, seen.trained).sum() == 0
    assert "only exact copies of seen images are found" in caplog.text


@pytest.mark.parametrize("thumbs", ["not base64!", "AAAA", 3])
def test_a_damaged_record_is_one_error_naming_it(trained, tmp_path, thumbs):
    record = json.loads((trained / "model" / SEEN_FILE).read_text())
    record["thumbs"]["trained"] = thumbs
    damaged = tmp_path / SEEN_FILE
    damaged.write_text(json.dumps(record))
    with pytest.raises(CxrtlError, match=f"{damaged}: a damaged record of the images the model has seen"):
        Seen.read(damaged)
