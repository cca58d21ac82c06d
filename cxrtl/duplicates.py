"""Which images are the same picture, and splits that keep them together.

The COVID-19 Radiography Database merges public collections that overlap, so one radiograph can appear
twice: byte for byte, re-encoded, or rescaled. A split drawn image by image then puts copies on both sides
and the test accuracy measures memory. Two fingerprints find them:

- the *content hash*: SHA-256 of the decoded grey pixels and their shape. The same picture stored in another
  file format, under another name, or in another dataset version has the same content hash.
- the *thumbnail*: the image shrunk to 32 x 32 (bilinear, antialiased), less its mean, scaled to unit length.
  Two images are near-duplicates when their thumbnails correlate at ``NEAR_DUPLICATE_CORRELATION`` or more,
  which is invariant to brightness and contrast and survives rescaling and JPEG recompression.

Why not a perceptual hash: on the demo data (160 images of 299 px), whose synthetic chests share one
anatomy as real radiographs do, a 256-bit difference hash put distinct images as close as 3 bits while
rescaled or JPEG (quality 40) copies differed by up to 11, and a 64-bit DCT hash put distinct images at 0
bits. The thumbnail correlation separates them (see the constant's figures).

Images linked by either are one *group*, and a group is always assigned to one split. Where a split must be
stable across dataset versions and seeds, a group's split follows from the dataset's own name of its first
member (``image_key``), which a re-encoded, resized or re-compressed release keeps; whether a model has seen an
image follows from both fingerprints (``matching``), which survive what a release does to the pixels.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold

from cxrtl.data import SPLITS
from cxrtl.errors import CxrtlError
from cxrtl.records import DuplicateSummary

THUMB_SIDE = 32
# Measured on the demo data at the real data's 299 px (write_demo_dataset(per_class=40), 160 images), as
# 1 - correlation: distinct images 1.70e-4 at the closest (two Normal chests that differ only in their noise),
# 9.8e-3 at the 1st percentile; copies bilinearly rescaled 4x up and back 2.8e-5, downscaled to 85 % 2.3e-5,
# JPEG quality 75 3.1e-5, quality 40 6.7e-5, downscaled to 85 % and JPEG quality 40 8.7e-5. The threshold,
# 1.2e-4, is the geometric middle of the gap: a factor of 1.4 from either side. Real radiographs of different
# patients differ far more than the demo's synthetic ones; a cropped or rotated copy is not caught.
NEAR_DUPLICATE_CORRELATION = 1 - 1.2e-4
_CHUNK = 1024  # rows of the pairwise correlation matrix computed at a time (1024 x 21,000 float32: 86 MB)


@dataclass(frozen=True)
class Fingerprint:
    content: str  # hex SHA-256 of the pixels and their shape
    size: tuple[int, int]  # width, height as stored
    small: np.ndarray  # uint8 [THUMB_SIDE**2]: the image shrunk to THUMB_SIDE x THUMB_SIDE, what is kept

    @property
    def thumb(self) -> np.ndarray:
        """float32 [THUMB_SIDE**2], zero mean and unit length (all zero for a flat image)."""
        return unit_thumbs(self.small[None])[0]


def fingerprint(gray: Image.Image) -> Fingerprint:
    """The fingerprints of one decoded greyscale (mode ``L``) image at its stored resolution."""
    pixels = np.asarray(gray)
    content = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
    small = np.asarray(gray.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR), dtype=np.uint8).ravel()
    return Fingerprint(content, gray.size, small)


def unit_thumbs(small: np.ndarray) -> np.ndarray:
    """Shrunk images (uint8 [n, THUMB_SIDE**2]) as thumbnails to correlate: float32, less their mean, unit length.

    The shrunk images are what is kept (prepared data, a model's record of what it saw): 1 KB an image, and
    exact. Rounding the unit vectors instead (to float16) moved a copy's correlation by up to 1.7e-4 on the demo
    data, more than the threshold itself: a thumbnail holds few distinct values, so their rounding errors add up.
    """
    thumbs = np.asarray(small, dtype=np.float32).reshape(-1, THUMB_SIDE**2)
    thumbs -= thumbs.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(thumbs, axis=1, keepdims=True)
    return np.divide(thumbs, norms, out=np.zeros_like(thumbs), where=norms > 0)


def encode_thumbs(small: np.ndarray) -> str:
    """Shrunk images (uint8 [n, THUMB_SIDE**2]) as text for a JSON record (base64)."""
    return base64.b64encode(np.ascontiguousarray(small, dtype=np.uint8).tobytes()).decode()


def decode_thumbs(text: str) -> np.ndarray:
    """``encode_thumbs`` undone: uint8 [n, THUMB_SIDE**2]; ValueError for text that is not such a record."""
    raw = base64.b64decode(text.encode(), validate=True)
    if len(raw) % THUMB_SIDE**2:
        raise ValueError("a record of shrunk images whose length is not a whole number of them")
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, THUMB_SIDE**2)


def image_key(image_id: str) -> str:
    """The dataset's own name of an image, which a re-release that re-encodes it keeps: its class folder and
    file name less the extension (``COVID/images/COVID-123.png`` -> ``COVID/COVID-123``; a PNG re-saved as
    JPEG keeps it)."""
    path = PurePosixPath(image_id)
    return f"{path.parts[0]}/{path.stem}"


@dataclass(frozen=True)
class Groups:
    """Group numbers (0..count-1) per image, and what linked them."""

    of: np.ndarray  # int64 [N]
    exact: int  # content hashes held by two or more images
    near: int  # groups holding two or more different contents, joined by their thumbnails

    @property
    def count(self) -> int:
        return int(self.of.max()) + 1 if len(self.of) else 0

    def summary(self, labels: np.ndarray) -> DuplicateSummary:
        """For ``info.json`` and the report; ``labels`` per image, to count groups holding both classes."""
        sizes = np.bincount(self.of, minlength=self.count)
        classes = np.zeros(self.count, dtype=np.int64)
        for label in np.unique(labels):
            classes += np.bincount(self.of[labels == label], minlength=self.count) > 0
        return DuplicateSummary(
            images=len(self.of),
            groups=self.count,
            exact_duplicate_groups=self.exact,
            near_duplicate_groups=self.near,
            images_in_duplicate_groups=int(sizes[sizes > 1].sum()),
            groups_with_both_classes=int(np.sum(classes > 1)),
        )


def group(prints: list[Fingerprint], min_correlation: float = NEAR_DUPLICATE_CORRELATION) -> Groups:
    """Join images with one content hash, and images whose thumbnails correlate at ``min_correlation`` or more."""
    n = len(prints)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    first: dict[str, int] = {}
    for i, p in enumerate(prints):
        join(first.setdefault(p.content, i), i)
    for i, j in _close_pairs(prints, min_correlation):
        join(int(i), int(j))
    _, of = np.unique([root(i) for i in range(n)], return_inverse=True)
    of = of.astype(np.int64).reshape(n)

    # One code per distinct content: exact duplicates share one; a group with two codes was joined by thumbnails.
    _, content, copies = np.unique([p.content for p in prints], return_inverse=True, return_counts=True)
    distinct = np.unique(np.stack([of, content.reshape(n)], axis=1), axis=0)[:, 0]
    return Groups(of, exact=int(np.sum(copies > 1)), near=int(np.sum(np.bincount(distinct, minlength=n) > 1)))


def _close_pairs(prints: list[Fingerprint], min_correlation: float) -> np.ndarray:
    """Index pairs (i < j) whose thumbnails correlate at ``min_correlation`` or more, a block of rows at a time."""
    if len(prints) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    thumbs = unit_thumbs(np.stack([p.small for p in prints]))
    pairs = []
    for start in range(0, len(prints), _CHUNK):
        block = thumbs[start : start + _CHUNK]
        # Only the columns from the block's first row on: the pairs before it were found already.
        i, j = np.nonzero(block @ thumbs[start:].T >= min_correlation)
        i, j = i + start, j + start
        keep = i < j
        pairs.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(pairs)


def stable_split(
    keys: list[str], groups: Groups, labels: np.ndarray, fractions: tuple[float, float, float]
) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) that depend only on the images' ``keys`` (``image_key``) and groups.

    A group's place is the SHA-256 of the smallest key in it, read as a number in [0, 1): test below the test
    fraction, validation below test + validation, training above. The keys are the dataset's own names, so a
    release that re-encodes, resizes or re-compresses every image (and changes every content hash) puts each
    image where it was; a renamed image may move, and the seen check (cxrtl.seen) still knows it by its
    pixels. The smallest key of a group depends neither on the order of the files nor on how the group was
    joined. Adding or removing other images, or changing the seed, moves no image unless a duplicate of it
    joins or leaves its group; class proportions hold on average, not exactly.

    Only in a dataset so small that a split would get no image of a class (with 70/10/20, likely below about
    30 images a class; never in the real data's thousands) does that split take the class's group whose place
    is nearest to its band, from a split that keeps another of the class.
    """
    smallest = [""] * groups.count
    for i in np.argsort(keys, kind="stable")[::-1]:
        smallest[groups.of[i]] = keys[i]  # the smallest key of each group comes last
    place = np.array([int(hashlib.sha256(k.encode()).hexdigest()[:13], 16) / 16**13 for k in smallest])
    _, val, test = fractions
    bands = {SPLITS.index("test"): (0.0, test), SPLITS.index("val"): (test, test + val), 0: (test + val, 1.0)}
    codes = np.where(place < test, SPLITS.index("test"), np.where(place < test + val, SPLITS.index("val"), 0))
    group_label = np.zeros(groups.count, dtype=labels.dtype)
    group_label[groups.of] = labels  # a group holding both classes counts as one of them
    for code, (low, high) in bands.items():
        if high <= low:
            continue
        for label in np.unique(labels):
            if np.any((codes == code) & (group_label == label)):
                continue
            donors = [
                g
                for g in np.flatnonzero(group_label == label)
                if np.sum((codes == codes[g]) & (group_label == label)) > 1
            ]
            if donors:
                nearest = min(donors, key=lambda g: max(low - place[g], place[g] - high, 0.0))
                codes[nearest] = code
    return codes[groups.of].astype(np.uint8)


def matching(queries: np.ndarray, references: np.ndarray, min_correlation: float = NEAR_DUPLICATE_CORRELATION):
    """Per row of ``queries`` (shrunk images, uint8 [n, THUMB_SIDE**2]), whether its thumbnail correlates at
    ``min_correlation`` or more with that of any row of ``references``: the same picture, whatever a release did
    to its file."""
    found = np.zeros(len(queries), dtype=bool)
    if len(queries) == 0 or len(references) == 0:
        return found
    against = unit_thumbs(references).T
    for start in range(0, len(queries), _CHUNK):
        block = unit_thumbs(queries[start : start + _CHUNK])
        found[start : start + _CHUNK] = (block @ against >= min_correlation).any(axis=1)
    return found


def grouped_split(
    labels: np.ndarray, groups: Groups, fractions: tuple[float, float, float], seed: int, label: str
) -> np.ndarray:
    """Split codes with each class close to the given proportions, seeded, every group on one side.

    The test split is one fold of ``round(1 / test fraction)`` stratified group folds; the validation split,
    if any, one fold of what is left. With no duplicates the proportions are exact to within an image per
    class and fold.
    """
    split = np.zeros(len(labels), dtype=np.uint8)
    remaining, share = np.arange(len(labels)), 1.0
    for code in (2, 1):  # test first, then validation from what is left
        fraction = fractions[code]
        if fraction <= 0:
            continue
        folds = round(share / fraction)
        folding = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        try:
            _, taken = next(folding.split(remaining, labels[remaining], groups.of[remaining]))
        except ValueError as exc:
            raise CxrtlError(
                f"{label}: too few images ({len(labels)}) for a stratified {SPLITS[code]} split ({exc})"
            ) from exc
        split[remaining[taken]] = code
        remaining = np.delete(remaining, taken)
        share -= fraction
    return split
