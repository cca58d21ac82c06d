"""The ten pretrained-weight sources of the study: where each is published, its file, format and results."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cxrtl.errors import CxrtlError
from cxrtl.weights.formats import (
    INAT_SUPERVISED,
    MOCO_V1,
    MOCO_V2,
    SWAV,
    TORCHVISION,
    ZENODO_CXR,
    CheckpointFormat,
)

SOURCE_NAMES = (
    "chestx-ray14",
    "chexpert",
    "imagenet",
    "imagenet-chestx-ray14",
    "imagenet-chexpert",
    "inat2021-supervised",
    "inat2021-supervised-from-scratch",
    "inat2021-mini-swav-1k",
    "moco-v1",
    "moco-v2",
)


@dataclass(frozen=True)
class PublishedMetrics:
    """The study's test-split results (n = 1,453, COVID positive); specificity from its classification reports."""

    TEST_IMAGES: ClassVar[int] = 1_453  # the study's test split: 723 COVID, 730 Normal

    accuracy: float
    precision: float
    sensitivity: float
    specificity: float
    f1: float


@dataclass(frozen=True)
class WeightSource:
    name: str
    description: str
    url: str | None  # None: no direct download, see manual_instructions
    manual_instructions: str | None
    file_name: str
    # The published sha256, or a leading part of it (torchvision publishes 8 hex digits in the file
    # name); None where the publisher gives none.
    sha256: str | None
    format: CheckpointFormat
    published: PublishedMetrics
    md5: str | None = None  # the published md5 (or its leading part), where the publisher gives that instead

    @property
    def origin(self) -> str:
        """Where the file comes from, in a few words, for tables."""
        if self.url is None:
            return "manual (NeWT release)"
        return self.url.split("/")[2]

    @property
    def published_checksum(self) -> str | None:
        """The published checksum as people write it ("md5 b251726a..."), or None."""
        if self.sha256:
            return f"sha256 {self.sha256}..."
        return f"md5 {self.md5}..." if self.md5 else None

    def published_matches(self, path: Path, sha256: str) -> bool | None:
        """Whether the file at ``path`` (whose sha256 is ``sha256``) has the published checksum; None when the
        publisher gives none."""
        if self.sha256 is not None:
            return sha256.startswith(self.sha256)
        if self.md5 is not None:
            with open(path, "rb") as f:
                return hashlib.file_digest(f, "md5").hexdigest().startswith(self.md5)
        return None


# Zenodo lists an md5 per file on the record's page, but no copy of it could be read from here (no internet;
# not in the searchable corpus): the four Zenodo sources stay unpinned until someone copies them from
# https://zenodo.org/records/5205234. The NeWT release (box.com) prints no checksum.
_ZENODO = "https://zenodo.org/records/5205234/files/{}?download=1"
_MOCO = "https://dl.fbaipublicfiles.com/moco/moco_checkpoints/{}"
_NEWT_BOX = "https://cornell.box.com/s/bnyhq5lwobu6fgjrub44zle0pyjijbmw"


def _newt_instructions(file_name: str) -> str:
    return (
        f"download the NeWT pretrained-model archive (5.7 GB) linked from "
        f"https://github.com/visipedia/newt/tree/main/benchmark ({_NEWT_BOX}) and take {file_name} "
        f"from its pt/ folder"
    )


def _source(
    name: str,
    description: str,
    file_name: str,
    fmt: CheckpointFormat,
    published: tuple[float, float, float, float, float],
    *,
    url: str | None = None,
    sha256: str | None = None,
    md5: str | None = None,
) -> WeightSource:
    return WeightSource(
        name=name,
        description=description,
        url=url,
        manual_instructions=None if url else _newt_instructions(file_name),
        file_name=file_name,
        sha256=sha256,
        format=fmt,
        published=PublishedMetrics(*published),
        md5=md5,
    )


SOURCES: dict[str, WeightSource] = {
    s.name: s
    for s in (
        _source(
            "chestx-ray14",
            "supervised on ChestX-ray14 (112k chest X-rays) from scratch",
            "chestxray14.pth.tar",
            ZENODO_CXR,
            (0.9766, 0.9791, 0.9737, 0.9795, 0.9764),
            url=_ZENODO.format("chestxray14.pth.tar"),
        ),
        _source(
            "chexpert",
            "supervised on CheXpert (224k chest X-rays) from scratch",
            "chexpert.pth.tar",
            ZENODO_CXR,
            (0.9849, 0.9861, 0.9834, 0.9863, 0.9848),
            url=_ZENODO.format("chexpert.pth.tar"),
        ),
        _source(
            "imagenet",
            "supervised ImageNet-1k (torchvision ResNet50_Weights.IMAGENET1K_V1)",
            "resnet50-0676ba61.pth",
            TORCHVISION,
            (0.8224, 0.8394, 0.7953, 0.8493, 0.8168),
            url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
            # torchvision names its files by the sha256's first 8 hex digits (torch.hub checks them).
            sha256="0676ba61",
        ),
        _source(
            "imagenet-chestx-ray14",
            "ImageNet, then supervised on ChestX-ray14",
            "ImageNet_chestxray14.pth.tar",
            ZENODO_CXR,
            (0.9821, 0.9902, 0.9737, 0.9904, 0.9819),
            url=_ZENODO.format("ImageNet_chestxray14.pth.tar"),
        ),
        _source(
            "imagenet-chexpert",
            "ImageNet, then supervised on CheXpert",
            "ImageNet_chexpert.pth.tar",
            ZENODO_CXR,
            (0.9601, 0.9650, 0.9544, 0.9658, 0.9597),
            url=_ZENODO.format("ImageNet_chexpert.pth.tar"),
        ),
        _source(
            "inat2021-supervised",
            "ImageNet, then supervised iNat2021 (2.7M images, 10k species)",
            "inat2021_supervised_large.pth.tar",
            INAT_SUPERVISED,
            (0.9566, 0.9635, 0.9488, 0.9644, 0.9561),
        ),
        _source(
            "inat2021-supervised-from-scratch",
            "supervised iNat2021 from scratch",
            "inat2021_supervised_large_from_scratch.pth.tar",
            INAT_SUPERVISED,
            (0.9704, 0.9696, 0.9710, 0.9699, 0.9703),
        ),
        _source(
            "inat2021-mini-swav-1k",
            "SwAV self-supervised on iNat2021 mini, 1000 epochs",
            "inat2021_swav_mini_1000_ep.pth",
            SWAV,
            (0.9917, 0.9931, 0.9903, 0.9932, 0.9917),
        ),
        _source(
            "moco-v1",
            "MoCo v1 self-supervised on ImageNet, 200 epochs",
            "moco_v1_200ep_pretrain.pth.tar",
            MOCO_V1,
            (0.9353, 0.9411, 0.9281, 0.9425, 0.9345),
            url=_MOCO.format("moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar"),
            md5="b251726a",  # github.com/facebookresearch/moco README.md, "Models" table, md5 column
        ),
        _source(
            "moco-v2",
            "MoCo v2 self-supervised on ImageNet, 800 epochs",
            "moco_v2_800ep_pretrain.pth.tar",
            MOCO_V2,
            (0.8135, 0.7974, 0.8382, 0.7890, 0.8173),
            url=_MOCO.format("moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar"),
            md5="a04e12f8",  # github.com/facebookresearch/moco README.md, "Models" table, md5 column
        ),
    )
}


def get_source(name: str) -> WeightSource:
    try:
        return SOURCES[name]
    except KeyError:
        close = difflib.get_close_matches(name, SOURCE_NAMES, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of: {', '.join(SOURCE_NAMES)}"
        raise CxrtlError(f"unknown weight source {name!r}; {hint}") from None


def check_sources(names: list[str]) -> list[str]:
    """``names`` if each is a known source, named once; else a CxrtlError saying which is not."""
    if not names:
        raise CxrtlError("no weight source given")
    for name in names:
        get_source(name)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CxrtlError(f"weight source(s) named more than once: {', '.join(repeated)}")
    return names
