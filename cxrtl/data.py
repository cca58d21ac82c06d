"""The preprocessed dataset: decoded images as one uint8 array, labels and a split.

Layout of a prepared folder (written by ``cxrtl preprocess``, read by train and evaluate):

- ``images.npy``  uint8 [N, S, S] grayscale, already resized; read memory-mapped
- ``labels.npy``  int64 [N]; ``1`` = COVID (the positive class), ``0`` = Normal
- ``split.npy``   uint8 [N]; ``0`` train, ``1`` validation, ``2`` test
- ``ids.json``    the N image paths relative to the dataset root, for predictions.csv
- ``info.json``   how it was made (:class:`cxrtl.records.PreparedInfo`): recipe, image size, seed, counts,
  skipped files, dataset version, duplicate groups, collections per class, and whether the lung masks could
  be used (``masks``)
- ``hashes.json``  the N images' content hashes (cxrtl.duplicates): what a model records it has seen
- ``thumbs.npy``  uint8 [N, 1024] the N images shrunk to 32 x 32 (cxrtl.duplicates): what a model records it
  has seen, found again in a release that re-encodes or resizes them
- ``collections.json``  (when the metadata could be read) the N images' collections
- ``masks.npy``   (when every image had a usable lung mask) bool [N, S, S] lungs, bit-packed along rows
  (``np.packbits(axis=2)``)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrtl.errors import CxrtlError

if TYPE_CHECKING:  # cxrtl.records needs this module (through cxrtl.recipes): imported where it is used
    from cxrtl.records import PreparedInfo

CLASS_NAMES = ("Normal", "COVID")  # index = label; COVID is the positive class
POSITIVE_LABEL = 1


def decided(covid_probability: float, threshold: float) -> str:
    """The class decided for an image: COVID at ``threshold`` or above, else Normal."""
    return CLASS_NAMES[int(covid_probability >= threshold)]


SPLITS = ("train", "val", "test")
MIN_IMAGE_SIZE = 32  # ResNet50 halves an image five times: 32 px leaves a 1x1 map at the end
# Kaggle's images are 299 px and the study used 224; at 1024 px the prepared array of the whole dataset
# (21k images) is already 22 GB, and larger sizes only fail later, in a MemoryError.
MAX_IMAGE_SIZE = 1024
INFO_FILE = "info.json"
_FILES = ("images.npy", "labels.npy", "split.npy", "ids.json", INFO_FILE)
_HASHES_FILE = "hashes.json"
_THUMBS_FILE = "thumbs.npy"
_COLLECTIONS_FILE = "collections.json"
_MASKS_FILE = "masks.npy"


def image_size_problem(size: int) -> str | None:
    """What is wrong with ``size`` as an image side in pixels, or None."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        return f"must be a whole number from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, got {size!r}"
    return None


def check_image_size(size: int, name: str = "image_size") -> int:
    problem = image_size_problem(size)
    if problem:
        raise CxrtlError(f"{name} {problem}")
    return size


@dataclass
class PreparedData:
    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    ids: list[str]
    info: PreparedInfo
    hashes: list[str] | None = None  # per image, SHA-256 of its pixels (None: prepared before they were kept)
    thumbs: np.ndarray | None = None  # per image, shrunk (cxrtl.duplicates; None: prepared before they were kept)
    collections: list[str] | None = None  # per image, from the dataset's metadata
    # The lungs, bit-packed along rows (uint8 [N, S, ceil(S / 8)]): read with lung_masks(), which unpacks
    # only the images asked for.
    packed_masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise CxrtlError(f"images must be uint8 [N, S, S], got {self.images.dtype} {self.images.shape}")
        if not (len(self.labels) == len(self.split) == len(self.ids) == n):
            raise CxrtlError("images, labels, split and ids differ in length")
        for name in ("hashes", "thumbs", "collections"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise CxrtlError(f"images and {name} differ in length")
        if self.packed_masks is not None and len(self.packed_masks) != n:
            raise CxrtlError("images and masks differ in length")

    @classmethod
    def pack_masks(cls, masks: np.ndarray) -> np.ndarray:
        """bool [N, S, S] lungs in the form ``packed_masks`` holds."""
        return np.packbits(masks, axis=2)

    def lung_masks(self, indices: np.ndarray) -> np.ndarray | None:
        """bool [len(indices), S, S]: the lungs of those images; None without masks."""
        if self.packed_masks is None:
            return None
        return np.unpackbits(self.packed_masks[indices], axis=2, count=self.image_size).astype(bool)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def indices(self, split: str) -> np.ndarray:
        """Indices of one split, in file order."""
        return np.flatnonzero(self.split == SPLITS.index(split))

    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "images.npy", self.images)
        np.save(out / "labels.npy", self.labels.astype(np.int64))
        np.save(out / "split.npy", self.split.astype(np.uint8))
        (out / "ids.json").write_text(json.dumps(self.ids))
        (out / INFO_FILE).write_text(json.dumps(self.info.to_dict(), indent=2, sort_keys=True))
        if self.hashes is not None:
            (out / _HASHES_FILE).write_text(json.dumps(self.hashes))
        if self.thumbs is not None:
            np.save(out / _THUMBS_FILE, self.thumbs)
        if self.collections is not None:
            (out / _COLLECTIONS_FILE).write_text(json.dumps(self.collections))
        if self.packed_masks is not None:
            np.save(out / _MASKS_FILE, self.packed_masks)

    @classmethod
    def load(cls, folder: Path) -> PreparedData:
        from cxrtl.records import PreparedInfo

        folder = Path(folder)
        missing = [name for name in _FILES if not (folder / name).is_file()]
        if missing:
            raise CxrtlError(
                f"{folder} is not a preprocessed dataset (missing {', '.join(missing)}); run 'cxrtl preprocess'"
            )
        try:
            hashes, collections, masks = folder / _HASHES_FILE, folder / _COLLECTIONS_FILE, folder / _MASKS_FILE
            thumbs = folder / _THUMBS_FILE
            return cls(
                images=np.load(folder / "images.npy", mmap_mode="r"),
                labels=np.load(folder / "labels.npy"),
                split=np.load(folder / "split.npy"),
                ids=json.loads((folder / "ids.json").read_text()),
                info=PreparedInfo.from_dict(json.loads((folder / INFO_FILE).read_text()), str(folder / INFO_FILE)),
                hashes=json.loads(hashes.read_text()) if hashes.is_file() else None,
                thumbs=np.load(thumbs, mmap_mode="r") if thumbs.is_file() else None,
                collections=json.loads(collections.read_text()) if collections.is_file() else None,
                packed_masks=np.load(masks, mmap_mode="r") if masks.is_file() else None,
            )
        except (ValueError, OSError) as exc:  # a truncated array or broken JSON: name the folder, not a traceback
            raise CxrtlError(
                f"{folder}: a damaged preprocessed dataset ({type(exc).__name__}); preprocess again"
            ) from None
