"""Where each image came from: the dataset's ``<Class>.metadata.xlsx`` files, and its lung masks.

The release ships, at the dataset's root, one spreadsheet per class with a row per image: ``FILE NAME``
(``COVID-1`` for ``COVID-1.png``; matched without regard to case or a ``.png`` ending), ``FORMAT``, ``SIZE``
and ``URL``,
the public collection the image was taken from. The collection is that URL. COVID and Normal images come
largely from different collections, so a model can learn the collection instead of the disease; the report
breaks the test metrics down by collection to show it.

Metadata is a help, not an input the run depends on: a file that is missing, unreadable or that does not
cover the images is one warning line naming it, and the run goes on without the breakdown.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtl.xlsx import SheetError, read_rows

logger = logging.getLogger(__name__)

METADATA_SUFFIX = ".metadata.xlsx"
NAME_COLUMN = "FILE NAME"
URL_COLUMN = "URL"
MASKS_FOLDER = "masks"  # beside each class's images/, the same file names
# A mask whose aspect ratio differs from its image's by more than this is not the image's mask resized.
_ASPECT_TOLERANCE = 0.02


class MetadataProblem(ValueError):
    pass


def metadata_file(root: Path, class_name: str) -> Path:
    return root / f"{class_name}{METADATA_SUFFIX}"


def read_collections(root: Path, images: dict[str, list[Path]]) -> dict[str, str] | None:
    """Each image's collection by its path relative to ``root``, for ``images`` (class name -> files).

    None, after one warning line naming the file, when a class's metadata is missing, malformed or lacks a
    row for one of its images.
    """
    collections = {}
    for class_name, files in images.items():
        path = metadata_file(root, class_name)
        try:
            by_name = _read(path)
            missing = [p.name for p in files if _key(p.name) not in by_name]
            if missing:
                raise MetadataProblem(f"no row for {len(missing)} of the {len(files)} images (first: {missing[0]})")
        except MetadataProblem as exc:
            logger.warning("%s: %s; going on without the breakdown by collection", path, exc)
            return None
        collections.update({p.relative_to(root).as_posix(): by_name[_key(p.name)] for p in files})
    return collections


def _read(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise MetadataProblem("no such file")
    try:
        rows = read_rows(path)
    except SheetError as exc:
        raise MetadataProblem(str(exc)) from None
    header = [cell.strip().upper() for cell in rows[0]] if rows else []
    if NAME_COLUMN not in header or URL_COLUMN not in header:
        raise MetadataProblem(f"no {NAME_COLUMN!r} and {URL_COLUMN!r} columns in the first row")
    name, url = header.index(NAME_COLUMN), header.index(URL_COLUMN)
    table = {}
    for row in rows[1:]:
        cells = row + [""] * (max(name, url) + 1 - len(row))
        if cells[name].strip():
            table[_key(cells[name])] = cells[url].strip() or "(no URL)"
    return table


def _key(file_name: str) -> str:
    """``COVID-1.png``, ``COVID-1`` and ``NORMAL-1`` as the metadata and the file system spell them."""
    name = file_name.strip().lower()
    return name.removesuffix(".png")


def load_mask(image_path: Path, image_size: tuple[int, int], size: int) -> np.ndarray | str:
    """The lung mask of ``image_path`` (stored at ``image_size``) as bool [size, size], or what is wrong."""
    path = image_path.parent.parent / MASKS_FOLDER / image_path.name
    if not path.is_file():
        return f"no mask {path}"
    try:
        with Image.open(path) as mask:
            gray = mask.convert("L")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        return f"unreadable mask {path} ({type(exc).__name__})"
    (w, h), (iw, ih) = gray.size, image_size
    if abs(w / h - iw / ih) > _ASPECT_TOLERANCE * iw / ih:
        return f"mask {path} is {w}x{h} for an image of {iw}x{ih}: not the same shape, cannot be resized to it"
    return np.asarray(gray.resize((size, size), Image.Resampling.BILINEAR)) >= 128
