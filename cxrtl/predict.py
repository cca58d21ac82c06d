"""Apply a trained model (the champion, a run's, or a folder's) to new images: PNG, JPEG and DICOM.

PNG and JPEG are decoded, made grayscale and resized by preprocess's own functions, and fed through the same
batches and input transform as evaluation, with the image size and normalisation the model records: the
probabilities are those ``cxrtl evaluate`` gives for the same images.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cxrtl import RESEARCH_ONLY, champion
from cxrtl.data import POSITIVE_LABEL, decided
from cxrtl.engine import PREDICT_BATCH_SIZE, Batches, predict, resolve_device
from cxrtl.errors import CxrtlError
from cxrtl.files import staged_folder
from cxrtl.gradcam import grad_cam
from cxrtl.html_page import Banner, Facts, Notes, Page, Section, Table
from cxrtl.preprocess import UNREADABLE, resized, to_gray8
from cxrtl.progress import Progress
from cxrtl.records import ModelMetadata
from cxrtl.store import S3_SCHEME, Store, keys, open_store, sha256_file
from cxrtl.train import METADATA_FILE, MODEL_FILE, load_model

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
PAGE_FILE = "predictions.html"  # the same predictions as a page, for the KFP UI or a browser
GRADCAM_FOLDER = "gradcam"  # with --gradcam: one PNG per image, the heat map over the image the model saw
GRADCAM_ALPHA = 0.4  # the heat map's weight in an overlay, as in the report's Grad-CAM figure
PREDICTION_COLUMNS = ("file", "covid_probability", "decision", "threshold", "flags", "model", "model_sha256")
# What flags an image as one the model (trained on frontal chest radiographs) may not speak to: it is still
# predicted, and each rule that it breaks is named in the output. Not a validation of the image: a plausibility check.
MIN_SIDE = 128  # px: smaller than any radiograph worth reading
MAX_ASPECT = 2.0  # the longer side over the shorter
COLOUR_LEVELS = 8.0  # grey levels by which a pixel's channels differ on average in a colour picture
RADIOGRAPHY = frozenset({"CR", "DX"})  # DICOM Modality: computed and digital radiography
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})  # DICOM ViewPosition
# The threshold of a model without a validation threshold (the paper recipe's): what evaluate decides at.
DEFAULT_THRESHOLD = 0.5
PROGRESS_FROM = 100  # images: fewer are predicted in seconds, and show no progress
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".dcm", ".dicom"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_DICOM_MAGIC_OFFSET = 128  # the preamble before "DICM" in a DICOM file (PS3.10 7.1)


@dataclass(frozen=True)
class PredictModel:
    """A model ready to predict with, and what identifies it."""

    folder: Path  # holds model.pt and model.json
    name: str  # e.g. "imagenet from run 2026-..." or the folder given
    sha256: str  # of model.pt, checked against its record where there is one


@dataclass(frozen=True)
class Prediction:
    file: str
    covid_probability: float
    flags: tuple[str, ...] = ()  # the plausibility rules the image breaks (MIN_SIDE ...)


@dataclass(frozen=True)
class ReadImage:
    pixels: np.ndarray  # uint8 [size, size], as the model sees it
    flags: tuple[str, ...]  # the plausibility rules it breaks


@dataclass
class PredictResult:
    predictions: list[Prediction]
    refused: list[str]  # one line each: the file and why
    threshold: float
    model: PredictModel


def champion_model(store: Store, into: Path) -> PredictModel:
    """The store's champion, downloaded into ``into``, its model.pt checked against the pointer's sha256."""
    current = champion.current(store)
    if current is None:
        raise CxrtlError(f"no champion in {store.url}; give --run-id and --source, or --model")
    recorded = current.pointer.files.get(MODEL_FILE)
    sha256 = _download(store, current.key(MODEL_FILE), current.key(METADATA_FILE), into)
    if recorded is not None and sha256 != recorded:
        raise CxrtlError(
            f"{store.url}: the champion's {MODEL_FILE} has sha256 {sha256[:12]}, its pointer says {recorded[:12]}; "
            f"`{champion.verify_command(store)}` tells more"
        )
    return PredictModel(into, f"champion {current.describe()}", sha256)


def run_model(store: Store, run_id: str, source: str, into: Path) -> PredictModel:
    """The model ``source`` gave in ``run_id``, downloaded into ``into`` (the store checks its sha256)."""
    key = keys.model_key(source, run_id, MODEL_FILE)
    if not store.exists(key):
        raise CxrtlError(f"{store.url}: no model of {source} in run {run_id} ({key})")
    sha256 = _download(store, key, keys.model_key(source, run_id, METADATA_FILE), into)
    return PredictModel(into, f"{source} from run {run_id}", sha256)


def folder_model(folder: Path) -> PredictModel:
    """A folder written by ``cxrtl train``: no record beside it to check against, so its sha256 is reported."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise CxrtlError(f"{folder}: no {MODEL_FILE}; is this the output of 'cxrtl train'?")
    return PredictModel(Path(folder), str(folder), sha256_file(path))


def _download(store: Store, model_key: str, metadata_key: str, into: Path) -> str:
    if not store.exists(metadata_key):
        raise CxrtlError(f"{store.url}: {metadata_key} is missing")
    store.get_file(metadata_key, into / METADATA_FILE)
    return store.get_file(model_key, into / MODEL_FILE)


def predict_images(
    model: PredictModel,
    inputs: list[Path | str],
    out: Path,
    device: str = "auto",
    batch_size: int = PREDICT_BATCH_SIZE,
    gradcam: bool = False,
) -> PredictResult:
    """The COVID probability of every readable image of ``inputs`` (files, folders, zips, s3:// prefixes), in
    predictions.csv in ``out``; each unreadable image skipped, one line in the result's ``refused``.
    ``gradcam``: also a Grad-CAM overlay of the decided class per image, in ``out``/gradcam/."""
    net, metadata = load_model(model.folder)
    threshold = threshold_of(metadata)
    names, images, flags, refused = [], [], [], []
    for name, read in _images(inputs):
        try:
            image = read_image(read(), name, metadata.image_size)
            names.append(name)
            images.append(image.pixels)
            flags.append(image.flags)
        except CxrtlError as exc:
            refused.append(str(exc))  # the caller says each in its own line
    if not names and not refused:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise CxrtlError(f"no images ({suffixes}) in {', '.join(map(str, inputs))}")
    batches = batches_of(metadata, images, device, batch_size)
    with Progress(len(images), "predicting", logger, shown_from=PROGRESS_FROM) as progress:
        probabilities = covid_probabilities(net, batches, progress)
    predictions = [Prediction(*row) for row in zip(names, map(float, probabilities), flags, strict=True)]
    result = PredictResult(predictions, refused, threshold, model)
    with staged_folder(Path(out), marker=PREDICTIONS_FILE) as staged:
        write_predictions(staged / PREDICTIONS_FILE, result)
        (staged / PAGE_FILE).write_text(predictions_page(result).html())
        if gradcam and images:
            decided = (probabilities >= threshold).astype(np.int64)
            _write_overlays(staged / GRADCAM_FOLDER, net, batches, decided, names)
    logger.info("%d image(s) predicted, %d refused; %s", len(predictions), len(refused), Path(out) / PREDICTIONS_FILE)
    return result


def threshold_of(metadata: ModelMetadata) -> float:
    """The COVID probability at or above which the model decides COVID: its validation threshold, else 0.5."""
    return metadata.validation_threshold if metadata.validation_threshold is not None else DEFAULT_THRESHOLD


def covid_probabilities(net: torch.nn.Module, batches: Batches, progress: Progress | None = None) -> np.ndarray:
    """float64 [n]: the COVID probability of each image of ``batches``, as evaluate computes it."""
    if not len(batches.images):
        return np.empty(0, dtype=np.float64)
    done = progress.update if progress is not None else None
    return predict(net.to(batches.device), batches, done=done)[:, POSITIVE_LABEL].astype(np.float64)


def batches_of(
    metadata: ModelMetadata, images: list[np.ndarray], device: str, batch_size: int = PREDICT_BATCH_SIZE
) -> Batches:
    """The images in evaluate's batches: the same input transform, batch size and order (float results can
    depend on a batch's size)."""
    stacked = np.stack(images) if images else np.empty((0, metadata.image_size, metadata.image_size), np.uint8)
    return Batches(
        stacked,
        np.zeros(len(images), dtype=np.int64),
        np.arange(len(images)),
        batch_size,
        metadata.config.training.normalize,
        resolve_device(device),
    )


def _write_overlays(folder: Path, net, batches: Batches, decided: np.ndarray, names: list[str]) -> None:
    """``NNNN-<file name>.png`` per image: its Grad-CAM (cxrtl.gradcam) of the decided class in jet over its grey."""
    from matplotlib import colormaps

    folder.mkdir()
    jet = colormaps["jet"]
    done = 0
    for x, _ in batches:
        maps = grad_cam(net, net.layer4, x, torch.from_numpy(decided[done : done + len(x)]).to(x.device))
        for heat in maps:
            gray = batches.images[done].astype(np.float64)[..., None]
            blended = (1 - GRADCAM_ALPHA) * gray + GRADCAM_ALPHA * 255 * jet(heat)[..., :3]
            name = Path(names[done].replace("!", "/")).stem
            Image.fromarray(np.rint(blended).astype(np.uint8)).save(folder / f"{done:04d}-{name}.png")
            done += 1


def predictions_page(result: PredictResult) -> Page:
    """predictions.html: self-contained (the KFP UI shows it in a sandbox), the research-use banner first."""
    flagged = sum(bool(p.flags) for p in result.predictions)
    warnings = [f"{flagged} image(s) flagged as ones the model may not speak to: see Flags."] if flagged else []
    facts = [
        ("Model", f"{result.model.name}, sha256 {result.model.sha256}"),
        ("Decision", f"COVID at a probability of {result.threshold:.3f} or more (the model's threshold)"),
        ("Images", f"{len(result.predictions)} predicted, {len(result.refused)} refused"),
    ]
    rows = [
        [
            p.file,
            f"{p.covid_probability:.3f}",
            decided(p.covid_probability, result.threshold),
            "; ".join(p.flags),
        ]
        for p in result.predictions
    ]
    sections = [Section("Predictions", [Table(["File", "COVID probability", "Decision", "Flags"], rows)])]
    if result.refused:
        sections.append(Section("Refused", [Notes(result.refused)]))
    return Page("COVID-19 predictions", sections, [Banner([RESEARCH_ONLY, *warnings]), Facts(facts)])


def write_predictions(path: Path, result: PredictResult) -> None:
    """One row per image; the probability as ``repr`` of its float, which reads back to the same float."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        for p in result.predictions:
            writer.writerow(
                [
                    p.file,
                    repr(p.covid_probability),
                    decided(p.covid_probability, result.threshold),
                    repr(result.threshold),
                    "; ".join(p.flags),
                    result.model.name,
                    result.model.sha256,
                ]
            )


def _images(inputs: list[Path | str]) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(name, a function returning the file's bytes) for each image of ``inputs``, in a stable order; a
    missing input is an image that cannot be read, refused like one."""
    for given in inputs:
        if str(given).startswith(S3_SCHEME):
            yield from _s3_images(str(given))
            continue
        path = Path(given)
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                yield str(found), found.read_bytes
        elif path.suffix.lower() == ".zip" and path.is_file():
            yield from _zip_images(path)
        else:
            yield str(path), lambda path=path: _read_file(path)


def _s3_images(url: str) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """The images under an ``s3://BUCKET/PREFIX`` (the MINIO_* settings of the store), by key."""
    bucket = open_store(url)
    for key in sorted(k for k in bucket.list() if Path(k).suffix.lower() in IMAGE_SUFFIXES):
        yield f"{url.rstrip('/')}/{key}", lambda key=key: bucket.get_bytes(key)


def _zip_images(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CxrtlError(f"{path}: not a readable zip ({exc})") from None
    with archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if not info.is_dir() and Path(info.filename).suffix.lower() in IMAGE_SUFFIXES:
                yield f"{path}!{info.filename}", lambda info=info: archive.read(info)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CxrtlError(f"{path}: no such file") from None
    except OSError as exc:
        raise CxrtlError(f"{path}: cannot be read ({exc.strerror})") from None


def read_image(content: bytes, name: str, size: int) -> ReadImage:
    """uint8 [size, size]: a PNG or JPEG through preprocess's decode and resize, a DICOM through
    :func:`dicom_gray8` first; with the plausibility rules it breaks. CxrtlError naming ``name`` if it cannot
    be read."""
    if content[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM" or Path(name).suffix.lower() in DICOM_SUFFIXES:
        ds = read_dicom(content, name)
        gray = dicom_gray8(ds, name)
        return ReadImage(resized(gray, size), (*_shape_flags(gray.size), *_dicom_flags(ds)))
    try:
        with Image.open(io.BytesIO(content)) as image:
            flags = (*_shape_flags(image.size), *_colour_flags(image))
            return ReadImage(resized(to_gray8(image), size), flags)
    except UNREADABLE as exc:
        raise CxrtlError(f"{name}: not a readable PNG, JPEG or DICOM image ({type(exc).__name__})") from None


def _shape_flags(size: tuple[int, int]) -> list[str]:
    width, height = size
    flags = [f"smaller than {MIN_SIDE} px ({width}x{height})"] if min(width, height) < MIN_SIDE else []
    if max(width, height) > MAX_ASPECT * min(width, height):
        flags.append(f"aspect ratio beyond {MAX_ASPECT:g}:1 ({width}x{height})")
    return flags


def _colour_flags(image: Image.Image) -> list[str]:
    """A colour picture, not a radiograph saved in colour (whose channels are equal)."""
    if image.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return []
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    spread = np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean()
    return (
        [f"a colour picture (channels differ by {spread:.0f} grey levels on average)"] if spread > COLOUR_LEVELS else []
    )


def _dicom_flags(ds) -> list[str]:
    """DICOM tags that say this is not a frontal radiograph: the modality, a lateral view."""
    modality = str(ds.get("Modality", "")).strip()
    view = str(ds.get("ViewPosition", "")).strip().upper()
    flags = [] if not modality or modality in RADIOGRAPHY else [f"DICOM modality {modality}, not CR or DX"]
    return flags + ([f"DICOM view position {view} (lateral)"] if view in LATERAL_VIEWS else [])


def read_dicom(content: bytes, name: str):
    """The DICOM dataset of ``content`` (pydicom's); CxrtlError naming ``name`` if it cannot be parsed."""
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(content), force=True)
    except Exception as exc:  # pydicom raises many kinds for a damaged file
        raise CxrtlError(f"{name}: not a readable DICOM file ({type(exc).__name__})") from None


def dicom_gray8(ds, name: str) -> Image.Image:
    """A DICOM image as 8-bit grayscale on the scale a PNG of it would have.

    The modality LUT (rescale slope and intercept) first; then the VOI LUT or window where the file has one, whose
    output range maps to 0..255; without one, the stored bit depth's full range (0..2^BitsStored-1, after the
    modality LUT) maps to 0..255, as a 16-bit PNG's 0..65535 does. MONOCHROME1 (white is 0) is inverted last.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds:
        raise CxrtlError(f"{name}: a DICOM file without pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise CxrtlError(f"{name}: DICOM photometric interpretation {photometric or 'missing'}, not MONOCHROME1/2")
    if syntax is not None and syntax.is_compressed and not _decoder_available(syntax):
        raise CxrtlError(f"{name}: transfer syntax {syntax.name} ({syntax}) needs a pydicom decoder not installed here")
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pydicom's decoders raise many kinds for damaged pixel data
        raise CxrtlError(f"{name}: DICOM pixel data cannot be decoded ({type(exc).__name__})") from None
    if stored.ndim != 2:
        raise CxrtlError(f"{name}: DICOM pixel data of shape {stored.shape}, not one grayscale frame")
    bits = int(ds.get("BitsStored", stored.dtype.itemsize * 8))
    values = apply_modality_lut(stored, ds).astype(np.float64)
    if "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds).astype(np.float64)
        low, high = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    else:
        # pydicom's windowing keeps the modality-transformed range of the stored bit depth.
        low, high = _modality_range(ds, bits)
        if "WindowCenter" in ds:
            values = apply_voi_lut(values, ds).astype(np.float64)
    if high <= low:
        raise CxrtlError(f"{name}: DICOM intensity range {low}..{high} is empty")
    gray = np.rint((np.clip(values, low, high) - low) * (255 / (high - low))).astype(np.uint8)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return Image.fromarray(gray)


def _decoder_available(syntax) -> bool:
    from pydicom.pixels import get_decoder

    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:  # a syntax pydicom has no decoder for at all
        return False


def _modality_range(ds, bits: int) -> tuple[float, float]:
    """The range of the stored bit depth after the rescale slope and intercept."""
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    stored_low, stored_high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    ends = sorted((stored_low * slope + intercept, stored_high * slope + intercept))
    return ends[0], ends[1]
