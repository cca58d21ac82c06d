"""A re-release of an ingested dataset, as a statistics review made one: every image re-encoded, same names."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtl.ingest import DATASET_DIR
from cxrtl.preprocess import to_gray8


def _jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


# What a re-release may do to each image; stored as PNG again (the layout holds PNG files only). The 16-bit
# copy shifts each value up 8 bits (x 256, not the exact x 257), so that most content hashes change too.
RE_ENCODINGS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize": lambda image: image.resize((image.width * 3 // 4,) * 2, Image.Resampling.BICUBIC),
    "jpeg": _jpeg,
    "16bit": lambda image: Image.fromarray(np.asarray(image, dtype=np.uint16) << 8).convert("I;16"),
}


def re_encode(raw: Path, out: Path, how: str) -> Path:
    """A copy of the ingested folder ``raw`` at ``out`` with every image re-encoded ``how``; masks dropped."""
    shutil.copytree(raw, out, ignore=shutil.ignore_patterns("masks"))
    for path in sorted((out / DATASET_DIR).glob("*/images/*.png")):
        with Image.open(path) as image:
            changed = RE_ENCODINGS[how](to_gray8(image))
        changed.save(path)
    return out
