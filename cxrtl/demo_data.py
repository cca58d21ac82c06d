"""A small synthetic stand-in for the Kaggle COVID-19 Radiography Database, for demos and tests.

Every image is an X-ray-like chest (a light body, two dark lung fields, a brighter spine, noise).
What tells the classes apart is what sits inside the lungs, and it is deliberately coarse so that it
survives downscaling to 32 px and is learnable by a head on a frozen, even randomly initialised, ResNet50:

- ``Normal``: nothing; the lungs stay dark.
- ``COVID``: a bilateral haze plus several large bright patches in both lungs, so the mean lung
  brightness is always well above any Normal image's.
- ``Lung_Opacity``: one or two large bright patches in one lung only.
- ``Viral Pneumonia``: a diffuse haze that is brightest next to the heart (perihilar).

The zip mirrors Kaggle's: ``COVID-19_Radiography_Dataset/<Class>/{images,masks}/<Class>-<i>.png``, a
``README.md.txt`` and a ``<Class>.metadata.xlsx`` per class naming each image's collection (made-up URLs,
see ``DEMO_COLLECTIONS``: most COVID images from one collection, most Normal images from another, as in the
real data). The masks are smaller than the images in the real data's proportion (256 px for 299 px images).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtl.data import check_image_size
from cxrtl.errors import CxrtlError
from cxrtl.ingest import ARCHIVE_NAME, CLASSES, DATASET_DIR, DEMO_FIRST_LINE, write_deterministic_zip
from cxrtl.metadata import MASKS_FOLDER, METADATA_SUFFIX, NAME_COLUMN, URL_COLUMN
from cxrtl.xlsx import workbook_bytes

logger = logging.getLogger(__name__)

# Lung fields in coordinates where the image spans [-1, 1] on both axes: centre x, centre y, semi-axes.
_LUNGS = ((-0.40, -0.02, 0.26, 0.56), (0.40, -0.02, 0.24, 0.56))
_README = f"""{DEMO_FIRST_LINE}
(tawsifurrahman/covid19-radiography-database), written by cxrtl.demo_data.

These are not chest X-rays. Each class carries a coarse, made-up pattern inside two lung-shaped
fields so that a classifier can learn it quickly: {", ".join(CLASSES)}.
Masks mark the lung fields. The metadata spreadsheets name made-up collections.
"""
_HOSPITAL, _SCREENING, _ARCHIVE = (
    "https://demo.example/hospital-a/covid-ward",
    "https://demo.example/hospital-b/screening",
    "https://demo.example/public-archive/pneumonia",
)
# Per class, the collection of image i is DEMO_COLLECTIONS[class][i % 4]: COVID mostly from one hospital,
# Normal mostly from a public archive, so the class x collection table shows the confound.
DEMO_COLLECTIONS = {
    "COVID": (_SCREENING, _HOSPITAL, _HOSPITAL, _HOSPITAL),
    "Normal": (_SCREENING, _ARCHIVE, _ARCHIVE, _ARCHIVE),
    "Lung_Opacity": (_ARCHIVE,) * 4,
    "Viral Pneumonia": (_ARCHIVE,) * 4,
}
# Images per class of the demo (`make demo`) and of `cxrtl demo-data`: with the recommended recipe's 20 % test
# split, enough test images for the report's intervals and promotion's paired test to mean something.
DEMO_PER_CLASS = 80
_MASK_SCALE = 256 / 299  # the real data's masks are 256 px for 299 px images


# The real release's COVID class has 3,616 images; a demo larger than that demonstrates nothing more and fills
# the disk (100,000,000 per class wrote 1.8 GB in 9 minutes before it was stopped).
MAX_PER_CLASS = 5_000


def per_class_problem(per_class: object) -> str | None:
    """What is wrong with ``per_class`` as a demo's images per class, or None."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or not 1 <= per_class <= MAX_PER_CLASS:
        return f"must be a whole number in 1..{MAX_PER_CLASS} (the real COVID class has 3,616), got {per_class!r}"
    return None


def write_demo_dataset(out_dir: Path, per_class: int = DEMO_PER_CLASS, seed: int = 0, image_size: int = 299) -> Path:
    """Write ``out_dir/covid19-radiography-database.zip``; the same bytes for the same arguments."""
    problem = per_class_problem(per_class)
    if problem:
        raise CxrtlError(f"per_class {problem}")
    check_image_size(image_size)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CxrtlError(f"{out_dir} is a file; demo-data needs a folder to write {ARCHIVE_NAME} into")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ARCHIVE_NAME
    try:
        write_deterministic_zip(target, _entries(per_class, seed, image_size))
    except BaseException:
        if created:
            out_dir.rmdir()  # only the folder this call made: the partial zip is already gone
        raise
    logger.info("wrote %d synthetic images per class (seed %d) to %s", per_class, seed, target)
    return target


def _entries(per_class: int, seed: int, size: int) -> Iterator[tuple[str, bytes]]:
    yield f"{DATASET_DIR}/README.md.txt", _README.encode()
    mask_size = round(size * _MASK_SCALE)
    for class_index, name in enumerate(CLASSES):
        rows = [[NAME_COLUMN, "FORMAT", "SIZE", URL_COLUMN]]
        for i in range(1, per_class + 1):
            # One generator per image: image i is the same whatever per_class is.
            rng = np.random.default_rng((seed, class_index, i))
            image, mask = synthetic_chest(name, rng, size)
            yield f"{DATASET_DIR}/{name}/images/{name}-{i}.png", _png(image)
            mask = Image.fromarray(mask).resize((mask_size, mask_size), Image.Resampling.NEAREST)
            yield f"{DATASET_DIR}/{name}/{MASKS_FOLDER}/{name}-{i}.png", _png(np.asarray(mask))
            rows.append([f"{name}-{i}", "PNG", f"{size}*{size}", DEMO_COLLECTIONS[name][i % 4]])
        yield f"{DATASET_DIR}/{name}{METADATA_SUFFIX}", workbook_bytes(rows)


def synthetic_chest(class_name: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image and its lung mask, both uint8 [size, size] (mask 0 or 255)."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    shift_x, shift_y = rng.uniform(-0.04, 0.04, size=2)
    scale = rng.uniform(0.93, 1.05)

    body = _soft_ellipse(x, y, shift_x, 0.08 + shift_y, 0.82 * scale, 1.0, edge=0.15)
    spine = np.exp(-(((x - shift_x) / 0.07) ** 2)) * body
    lung_shapes = [
        _soft_ellipse(x, y, cx * scale + shift_x, cy + shift_y, ax * scale, ay * scale, edge=0.12)
        for cx, cy, ax, ay in _LUNGS
    ]
    lungs = np.maximum(*lung_shapes)
    # 0 at the top and 1 at the bottom of each lung field: disease patterns favour the lower zones.
    lower = np.clip((y - shift_y + 0.5) / 1.1, 0.0, 1.0)

    image = 0.08 + rng.uniform(0.50, 0.58) * body + 0.12 * spine - rng.uniform(0.33, 0.38) * lungs
    image += _disease(class_name, rng, x, y, lung_shapes, lower, shift_x, shift_y, scale) * lungs
    image *= rng.uniform(0.95, 1.05)
    image += rng.normal(0.0, 0.025, size=image.shape).astype(np.float32)
    mask = (np.maximum(*lung_shapes) >= 0.5).astype(np.uint8) * 255
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mask


def _disease(
    class_name: str,
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    lung_shapes: list[np.ndarray],
    lower: np.ndarray,
    shift_x: float,
    shift_y: float,
    scale: float,
) -> np.ndarray:
    """Extra brightness inside the lungs (before masking by them) for one class."""
    if class_name == "Normal":
        return np.zeros_like(x)
    if class_name == "COVID":
        patches = sum(
            _patch(rng, x, y, side, shift_x, shift_y, scale, amplitude=(0.30, 0.45))
            for side in rng.permutation([0, 1, 0, 1, *rng.integers(0, 2, size=3)])
        )
        return np.minimum(rng.uniform(0.12, 0.18) + 0.10 * lower + patches, 0.55)
    if class_name == "Lung_Opacity":
        side = int(rng.integers(0, 2))
        count = int(rng.integers(1, 3))
        patches = sum(_patch(rng, x, y, side, shift_x, shift_y, scale, amplitude=(0.35, 0.45)) for _ in range(count))
        return np.minimum(patches, 0.5)
    if class_name == "Viral Pneumonia":
        # Brightest at the inner (heart-facing) edge of each lung.
        inner = np.clip(1.0 - np.abs(np.abs(x - shift_x) - 0.18 * scale) / (0.4 * scale), 0.0, 1.0)
        return rng.uniform(0.08, 0.12) + rng.uniform(0.22, 0.28) * inner
    raise ValueError(f"unknown class {class_name!r}")


def _patch(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    side: int,
    shift_x: float,
    shift_y: float,
    scale: float,
    amplitude: tuple[float, float],
) -> np.ndarray:
    """A large soft blob somewhere in lung ``side`` (0 right of the patient = image left, 1 the other)."""
    cx, cy, ax, ay = _LUNGS[side]
    px = cx * scale + shift_x + rng.uniform(-0.6, 0.6) * ax * scale
    py = cy + shift_y + rng.uniform(-0.3, 0.8) * ay * scale
    sigma = rng.uniform(0.14, 0.22) * scale
    return rng.uniform(*amplitude) * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2))


def _soft_ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, edge: float) -> np.ndarray:
    """1 inside the ellipse, 0 outside, with a linear ramp of relative width ``edge`` at the border."""
    radius = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return np.clip((1.0 - radius) / edge + 0.5, 0.0, 1.0)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
