"""Which images a model has seen: the images it trained on and chose its epoch on, by content hash and thumbnail.

Train writes them beside the model (``seen.json``; in the store under the model's keys, and the champion's
with it). A model scored on images it has seen looks better than it is; evaluate refuses that unless told
otherwise, and promotion compares two models only on test images neither has seen.

An image counts as seen when its content hash is one the model saw, or its thumbnail correlates with one the
model saw at ``cxrtl.duplicates.NEAR_DUPLICATE_CORRELATION`` or more: the test that groups near-duplicates,
so a release that resizes, re-compresses, re-saves at 16 bits or re-brightens every image still finds them
(measured rates: docs/method.md). Records made before thumbnails were kept hold content hashes only; with
them only exact copies are found, and a warning says so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrtl.data import PreparedData
from cxrtl.duplicates import THUMB_SIDE, decode_thumbs, encode_thumbs, matching
from cxrtl.errors import CxrtlError

logger = logging.getLogger(__name__)

SEEN_FILE = "seen.json"


@dataclass(frozen=True)
class Images:
    """A set of images by both keys: content hashes, and their thumbnails (one row per hash, in sorted order)."""

    hashes: frozenset[str]
    thumbs: np.ndarray | None  # shrunk images, uint8 [len(hashes), THUMB_SIDE**2]; None in records made before

    @classmethod
    def of(cls, hashes: list[str], data: PreparedData, indices: np.ndarray) -> Images:
        """The images ``indices`` of ``data`` (whose content hashes are ``hashes``); thumbnails where it has them."""
        by_hash = {hashes[i]: i for i in indices}
        ordered = sorted(by_hash)
        thumbs = None
        if data.thumbs is not None:
            thumbs = np.asarray(data.thumbs[[by_hash[h] for h in ordered]], dtype=np.uint8)
            thumbs = thumbs.reshape(len(ordered), THUMB_SIDE**2)
        return cls(frozenset(ordered), thumbs)

    def __or__(self, other: Images) -> Images:
        if self.thumbs is None or other.thumbs is None:
            return Images(self.hashes | other.hashes, None)
        return Images(self.hashes | other.hashes, np.concatenate([self.thumbs, other.thumbs]))

    def record(self) -> dict[str, object]:
        ordered = sorted(self.hashes)
        return {"hashes": ordered, "thumbs": None if self.thumbs is None else encode_thumbs(self.thumbs)}


@dataclass(frozen=True)
class Seen:
    trained: Images  # the training split
    selected: Images  # the split the best epoch was chosen on (the test split in the paper recipe)

    @property
    def any(self) -> Images:
        return self.trained | self.selected

    @classmethod
    def of(cls, data: PreparedData, selection_split: str) -> Seen | None:
        """What a model trained on ``data`` sees; None for data prepared before images had content hashes."""
        if data.hashes is None:
            return None
        hashes = data.hashes
        return cls(
            Images.of(hashes, data, data.indices("train")), Images.of(hashes, data, data.indices(selection_split))
        )

    def to_json(self) -> str:
        trained, selected = self.trained.record(), self.selected.record()
        thumbs = {"trained": trained["thumbs"], "selected": selected["thumbs"]}
        return json.dumps({"trained": trained["hashes"], "selected": selected["hashes"], "thumbs": thumbs})

    @classmethod
    def read(cls, path: Path) -> Seen | None:
        """The record at ``path``; None when there is none (a model trained before models kept one)."""
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            thumbs = record.get("thumbs") or {}
            parts = []
            for name in ("trained", "selected"):
                hashes = record[name]
                kept = None if thumbs.get(name) is None else decode_thumbs(thumbs[name])
                if kept is not None and len(kept) != len(hashes):
                    raise ValueError(f"{len(kept)} thumbnails for {len(hashes)} {name} images")
                parts.append(Images(frozenset(hashes), kept))
            return cls(*parts)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CxrtlError(
                f"{path}: a damaged record of the images the model has seen ({type(exc).__name__})"
            ) from None


def seen_in(data: PreparedData, indices: np.ndarray, images: Images) -> np.ndarray:
    """Which of the images ``indices`` of ``data`` are among ``images`` (bool per index): the same content hash,
    or a thumbnail that matches one of theirs."""
    if data.hashes is None:
        raise CxrtlError("the preprocessed data has no content hashes (hashes.json); preprocess it again")
    exact = np.array([data.hashes[i] in images.hashes for i in indices], dtype=bool)
    if images.thumbs is None or data.thumbs is None:
        logger.warning(
            "the %s has no thumbnails (made before cxrtl kept them): only exact copies of seen images are found, "
            "not re-encoded or resized ones",
            "model's record of the images it has seen" if images.thumbs is None else "preprocessed data",
        )
        return exact
    return exact | matching(np.asarray(data.thumbs[indices]), images.thumbs)
