"""How well the image identity (content hash, or thumbnails correlating at
cxrtl.duplicates.NEAR_DUPLICATE_CORRELATION or more) finds re-encoded copies of the demo images and keeps
distinct ones apart. Run from the repository root: python docs/measure_identity.py [per_class] [seed]."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from cxrtl.demo_data import write_demo_dataset
from cxrtl.duplicates import NEAR_DUPLICATE_CORRELATION, fingerprint
from cxrtl.preprocess import to_gray8


def reopen(image: Image.Image, **save) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, **save)
    return to_gray8(Image.open(io.BytesIO(buffer.getvalue())))


def brightness(image: Image.Image, factor: float) -> Image.Image:
    values = np.rint(np.asarray(image, dtype=np.float64) * factor)
    return reopen(Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)), format="PNG")


TRANSFORMS = {
    "PNG re-save (lossless)": lambda im: reopen(im, format="PNG", optimize=True),
    "resize 299->256": lambda im: reopen(im.resize((256, 256), Image.Resampling.BICUBIC), format="PNG"),
    "resize 299->224": lambda im: reopen(im.resize((224, 224), Image.Resampling.BICUBIC), format="PNG"),
    "JPEG quality 75": lambda im: reopen(im, format="JPEG", quality=75),
    "8->16 bit PNG": lambda im: reopen(
        Image.fromarray(np.asarray(im, dtype=np.uint16) * 257).convert("I;16"), format="PNG"
    ),
    "8->16 bit PNG (x256)": lambda im: reopen(
        Image.fromarray(np.asarray(im, dtype=np.uint16) * 256).convert("I;16"), format="PNG"
    ),
    "brightness +2 %": lambda im: brightness(im, 1.02),
    "brightness -2 %": lambda im: brightness(im, 0.98),
    "resize 224 + JPEG 75": lambda im: reopen(
        im.resize((224, 224), Image.Resampling.BICUBIC), format="JPEG", quality=75
    ),
}


def main(per_class: int, seed: int, folder: str = "/tmp/measure-identity") -> None:
    archive = write_demo_dataset(Path(folder), per_class=per_class, seed=seed)
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if "/images/" in n)
        images = [to_gray8(Image.open(io.BytesIO(zf.read(n)))) for n in names]
    originals = [fingerprint(im) for im in images]
    thumbs = np.stack([p.thumb for p in originals]).astype(np.float64)
    gap = 1 - NEAR_DUPLICATE_CORRELATION
    distance = 1 - thumbs @ thumbs.T
    off = distance[~np.eye(len(images), dtype=bool)]
    print(f"{len(images)} demo images ({per_class} per class, seed {seed}), threshold 1 - corr <= {gap:.2g}")
    print(
        f"distinct originals: closest 1-corr {off.min():.2e}, "
        f"pairs matched {np.sum(off <= gap) // 2} of {len(off) // 2}"
    )
    print("| copy | exact (hash) | missed | 1-corr median / max | images falsely matching another original |")
    for label, transform in TRANSFORMS.items():
        copies = [fingerprint(transform(im)) for im in images]
        same = np.array([c.content == o.content for c, o in zip(copies, originals, strict=True)])
        d = 1 - np.stack([c.thumb for c in copies]).astype(np.float64) @ thumbs.T
        own = np.diag(d).copy()
        matched_own = (own <= gap) | same
        others = d + np.eye(len(images)) * 10
        false = np.sum(np.any(others <= gap, axis=1))
        print(
            f"| {label} | {same.sum()} | {np.sum(~matched_own)} of {len(images)} | "
            f"{np.median(own):.1e} / {own.max():.1e} "
            f"| {false} of {len(images)} (closest other {others.min():.1e}) |"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
