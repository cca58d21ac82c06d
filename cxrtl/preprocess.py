"""Turn an ingested folder into a :class:`~cxrtl.data.PreparedData`: COVID vs Normal, decoded, resized, split.

Each image is decoded once with PIL, converted to grayscale and resized with bilinear filtering, which is
what the study's ``Resize(224)`` did to its PIL images (the Kaggle images are square). The study fed RGB
copies of grayscale images; the model side repeats the one stored channel, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxrtl.data import CLASS_NAMES, INFO_FILE, SPLITS, PreparedData, check_image_size
from cxrtl.duplicates import Fingerprint, fingerprint, group, grouped_split, image_key, stable_split
from cxrtl.errors import CxrtlError
from cxrtl.files import staged_folder
from cxrtl.ingest import INGEST_FILE, find_dataset, list_images
from cxrtl.metadata import MASKS_FOLDER, load_mask, read_collections
from cxrtl.progress import Progress
from cxrtl.recipes import get_recipe
from cxrtl.records import PreparedInfo
from cxrtl.settings import RunSettings

logger = logging.getLogger(__name__)

# Readable images each class needs. With 10, the recommended recipe's stratified split gives each class at
# least 2 test images and 1 validation image; with a handful, a split can miss a class and its metrics are
# undefined (sensitivity of no positives, ROC AUC of one class). Checked again on the splits themselves.
MIN_IMAGES_PER_CLASS = 10
# Test images of a class below which preprocessing warns that the report's figures for it mean little: with
# fewer than 17, the report's exact (Clopper-Pearson) 95 % interval of a proportion over that class (sensitivity
# on COVID, specificity on Normal) can be more than 0.5 wide (16 images, half right: 0.25-0.75); with 17 it is
# at most 0.49 wide.
MIN_TEST_IMAGES_PER_CLASS = 17


def preprocess(
    raw: Path,
    out: Path,
    recipe: str = RunSettings.recipe,
    image_size: int = RunSettings.image_size,
    seed: int = RunSettings.seed,
) -> PreparedData:
    """Prepare COVID (label 1) and Normal (label 0) images of the ingested folder ``raw`` into ``out``."""
    check_image_size(image_size)
    chosen = get_recipe(recipe)
    raw = Path(raw)
    if not raw.is_dir():
        raise CxrtlError(f"raw folder {raw} does not exist; run 'cxrtl ingest' first")
    root = find_dataset(raw, str(raw))

    available = {name: list_images(root / name / "images") for name in CLASS_NAMES}
    paths = [p for name in CLASS_NAMES for p in sorted(available[name], key=_natural_key)]
    labels = np.array([label for label, name in enumerate(CLASS_NAMES) for _ in available[name]], dtype=np.int64)
    ids = [p.relative_to(root).as_posix() for p in paths]

    with_masks = any((root / name / MASKS_FOLDER).is_dir() for name in CLASS_NAMES)
    decoded = _decode_all(paths, image_size, with_masks)
    images, prints, masks = decoded.images, decoded.prints, decoded.masks
    ok = np.array([p is not None for p in prints], dtype=bool)
    skipped = [ids[i] for i in np.flatnonzero(~ok)]
    if skipped:
        logger.warning("skipped %d unreadable image(s): %s", len(skipped), ", ".join(skipped[:10]))
    _check_readable(labels, ok, raw)
    # Balanced after the unreadable images are dropped, so that what is kept is balanced.
    keep = _balance(labels, ok, np.random.default_rng(seed)) if chosen.balance_classes else np.flatnonzero(ok)
    images, labels, ids = images[keep], labels[keep], [ids[i] for i in keep]
    kept = [prints[i] for i in keep]
    mask_problems = [decoded.mask_problems[i] for i in keep if decoded.mask_problems[i]]
    if not with_masks:
        masks_note = f"no {MASKS_FOLDER}/ folders beside the images"
    elif mask_problems:
        masks_note = f"{len(mask_problems)} image(s) without a usable mask; the first: {mask_problems[0]}"
        logger.warning("lung masks: %s; the masked evaluation cannot run", masks_note)
    else:
        masks_note = "ok"
    collections = read_collections(root, available)
    image_collections = [collections[i] for i in ids] if collections is not None else None
    groups = group(kept)
    if chosen.stable_split:
        split = stable_split([image_key(i) for i in ids], groups, labels, chosen.split_fractions)
    else:
        split = grouped_split(labels, groups, chosen.split_fractions, seed, str(raw))
    counts = {
        s: {name: int(np.sum((split == code) & (labels == label))) for label, name in enumerate(CLASS_NAMES)}
        for code, s in enumerate(SPLITS)
    }
    for s, fraction in zip(SPLITS, chosen.split_fractions, strict=True):
        missing = [name for name, n in counts[s].items() if fraction > 0 and n == 0]
        if missing:
            raise CxrtlError(f"{raw}: the {s} split has no {' and no '.join(missing)} image; the dataset is too small")
    small = _warn_small_test_split(counts["test"])
    duplicates = groups.summary(labels)
    if duplicates.groups_with_both_classes:
        logger.warning(
            "%d group(s) of duplicate images hold both COVID and Normal images", duplicates.groups_with_both_classes
        )

    data = PreparedData(
        images=images,
        labels=labels,
        split=split,
        ids=ids,
        hashes=[p.content for p in kept],
        thumbs=np.stack([p.small for p in kept]),
        collections=image_collections,
        packed_masks=PreparedData.pack_masks(masks[keep]) if masks is not None and masks_note == "ok" else None,
        info=PreparedInfo(
            recipe=chosen.name,
            image_size=image_size,
            seed=seed,
            classes=list(CLASS_NAMES),
            available={name: len(files) for name, files in available.items()},
            counts=counts,
            small_test_classes=small,
            min_test_images_per_class=MIN_TEST_IMAGES_PER_CLASS,
            total=len(ids),
            skipped_count=len(skipped),
            skipped=skipped,
            duplicates=duplicates,
            collections=_collection_table(labels, image_collections),
            masks=masks_note,
            dataset=_ingest_record(raw),
        ),
    )
    with staged_folder(Path(out), marker=INFO_FILE) as staged:
        data.save(staged)
    logger.info("prepared %d images of %dpx in %s; %s", len(ids), image_size, out, split_sizes(counts))
    return data


def split_sizes(counts: dict[str, dict[str, int]]) -> str:
    """Each split's size by class, in one line: ``train 56 (Normal 28, COVID 28), val ...``."""
    return ", ".join(
        f"{s} {sum(by_class.values())} ({', '.join(f'{name} {n}' for name, n in by_class.items())})"
        for s, by_class in counts.items()
    )


def _warn_small_test_split(test: dict[str, int]) -> dict[str, int]:
    """The classes with fewer than MIN_TEST_IMAGES_PER_CLASS test images (and how many), warned in one line."""
    small = {name: n for name, n in test.items() if n < MIN_TEST_IMAGES_PER_CLASS}
    if small:
        logger.warning(
            "small test split: %s test image(s); below %d a class's 95 %% intervals in the report can be more than "
            "0.5 wide, so its figures say little",
            " and ".join(f"{n} {name}" for name, n in small.items()),
            MIN_TEST_IMAGES_PER_CLASS,
        )
    return small


def _check_readable(labels: np.ndarray, ok: np.ndarray, raw: Path) -> None:
    """Refuse data that cannot answer the question: each class needs MIN_IMAGES_PER_CLASS readable images."""
    for label, name in enumerate(CLASS_NAMES):
        found = int(np.sum(labels == label))
        readable = int(np.sum(ok & (labels == label)))
        if readable < MIN_IMAGES_PER_CLASS:
            raise CxrtlError(
                f"{raw}: {readable} readable {name} image(s) of {found}; at least {MIN_IMAGES_PER_CLASS} are "
                "needed for each class to be in every split"
            )


def _balance(labels: np.ndarray, ok: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of the readable images, every class subsampled to the smallest one's count (the study: all
    COVID, as many Normal)."""
    readable = [np.flatnonzero(ok & (labels == label)) for label in range(len(CLASS_NAMES))]
    n = min(len(found) for found in readable)
    kept = [found if len(found) == n else np.sort(rng.choice(found, n, replace=False)) for found in readable]
    return np.concatenate(kept)


def _collection_table(labels: np.ndarray, collections: list[str] | None) -> dict[str, dict[str, int]] | None:
    """Images per class and collection, or None without metadata."""
    if collections is None:
        return None
    table: dict[str, dict[str, int]] = {name: {} for name in CLASS_NAMES}
    for label, collection in zip(labels.tolist(), collections, strict=True):
        row = table[CLASS_NAMES[label]]
        row[collection] = row.get(collection, 0) + 1
    return table


@dataclass
class _Decoded:
    images: np.ndarray  # uint8 [N, S, S]
    prints: list[Fingerprint | None]  # None: unreadable
    masks: np.ndarray | None  # bool [N, S, S], when masks were asked for
    mask_problems: list[str]  # per image, "" when its mask is fine


def _decode_all(paths: list[Path], size: int, with_masks: bool) -> _Decoded:
    """Decode into preallocated arrays: the images, their fingerprints and, if asked for, their lung masks."""
    decoded = _Decoded(
        images=np.zeros((len(paths), size, size), dtype=np.uint8),
        prints=[None] * len(paths),
        masks=np.zeros((len(paths), size, size), dtype=bool) if with_masks else None,
        mask_problems=[""] * len(paths),
    )

    def decode(i: int) -> None:
        loaded = _load(paths[i], size)
        if loaded is None:
            return
        decoded.images[i], decoded.prints[i] = loaded
        if decoded.masks is not None:
            mask = load_mask(paths[i], loaded[1].size, size)
            if isinstance(mask, str):
                decoded.mask_problems[i] = mask
            else:
                decoded.masks[i] = mask

    # Pillow releases the GIL while decoding and resizing, so threads use every core without copying.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, Progress(len(paths), "decoding", logger) as shown:
        for _ in pool.map(decode, range(len(paths))):
            shown.update()
    return decoded


def _load(path: Path, size: int) -> tuple[np.ndarray, Fingerprint] | None:
    """The image resized to ``size``, and the fingerprints of it as stored."""
    try:
        with Image.open(path) as image:
            gray = to_gray8(image)
            return resized(gray, size), fingerprint(gray)
    except UNREADABLE as exc:
        logger.debug("cannot read %s: %s", path, exc)
        return None


# PIL reports broken files as OSError (truncated, unidentified), SyntaxError (bad PNG chunks) or others.
UNREADABLE = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def resized(gray: Image.Image, size: int) -> np.ndarray:
    """An 8-bit grayscale image as the model takes it: uint8 [size, size], bilinear (what training saw)."""
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(gray)


# Modes that hold more than 8 bits per grey pixel: a 16-bit PNG opens as I;16, and convert("L") would clip
# every value above 255 to white instead of scaling it. Their values span a 16-bit range.
_HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_HIGH_BIT_MAX = 65535


def to_gray8(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit grayscale, 16-bit images scaled from their full range (65535 -> 255), not clipped."""
    if image.mode not in _HIGH_BIT_MODES:
        return image.convert("L")
    values = np.asarray(image, dtype=np.float64)
    if values.min() < 0 or values.max() > _HIGH_BIT_MAX:
        raise ValueError(f"{image.mode} values outside 0..{_HIGH_BIT_MAX}")
    return Image.fromarray(np.rint(values * (255 / _HIGH_BIT_MAX)).astype(np.uint8))


def _natural_key(path: Path) -> list[Any]:
    """``COVID-2.png`` before ``COVID-10.png``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _ingest_record(raw: Path) -> dict[str, Any] | None:
    record = raw / INGEST_FILE
    return json.loads(record.read_text()) if record.is_file() else None
