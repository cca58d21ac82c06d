"""``cxrtl predict``: the champion's (or another model's) COVID probability for new images."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cxrtl.cli.options import STORE_HELP, add_device_option
from cxrtl.cli.steps import run_id_option

if TYPE_CHECKING:
    from cxrtl.predict import PredictModel

# Exit status when some images were refused and the others predicted (2 is a mistake that stopped the command).
EXIT_REFUSED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="COVID probability of new PNG, JPEG or DICOM images, with the champion or another model",
        description="Reads PNG and JPEG as preprocess does and DICOM through pydicom, at the image size and "
        "normalisation the model records. An image that cannot be read is refused in one line and the others are "
        f"predicted; then the exit status is {EXIT_REFUSED}. Research use, not a medical device.",
    )
    p.add_argument(
        "images",
        type=_image_input,
        nargs="+",
        help="image files, folders (searched recursively), zips, or s3://BUCKET/PREFIX (the store's MINIO_* settings)",
    )
    p.add_argument("--out", required=True, type=Path, help="folder for predictions.csv")
    add_model_options(p)
    add_device_option(p)
    p.add_argument("--gradcam", action="store_true", help="also a Grad-CAM overlay per image, in OUT/gradcam/")
    p.set_defaults(func=_predict)


def _image_input(value: str) -> Path | str:
    """A path, or an s3:// URL kept as written (a Path would fold its "//")."""
    from cxrtl.store import S3_SCHEME

    return value if value.startswith(S3_SCHEME) else Path(value)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Which model: the store's champion, a run's, or a folder's (``cxrtl predict`` and ``cxrtl serve``)."""
    which = p.add_argument_group("the model (default: the store's champion)")
    which.add_argument("--store", metavar="URL", help=STORE_HELP)
    which.add_argument(
        "--run-id", type=run_id_option, help="a run's model instead (with --source; default: the champion)"
    )
    which.add_argument("--source", help="the weight source of the run's model (with --run-id; default: none)")
    which.add_argument("--model", type=Path, help="a folder written by 'cxrtl train' instead (default: the champion)")


def chosen_model(args: argparse.Namespace, into: Path) -> PredictModel:
    """The model :func:`add_model_options`' options name, downloaded into ``into`` if it is in a store."""
    from cxrtl.errors import CxrtlError
    from cxrtl.predict import champion_model, folder_model, run_model
    from cxrtl.store import open_store

    if (args.run_id is None) != (args.source is None):
        raise CxrtlError("--run-id and --source go together: the model one source gave in one run")
    if args.model is not None and args.run_id is not None:
        raise CxrtlError("give --model or --run-id/--source, not both")
    if args.model is not None:
        return folder_model(args.model)
    if args.run_id is not None:
        return run_model(open_store(args.store), args.run_id, args.source, into)
    return champion_model(open_store(args.store), into)


def _predict(args: argparse.Namespace) -> int:
    from cxrtl.predict import predict_images

    with tempfile.TemporaryDirectory(prefix="cxrtl-predict-") as tmp:
        model = chosen_model(args, Path(tmp))
        result = predict_images(model, args.images, args.out, device=args.device, gradcam=args.gradcam)
    for line in result.refused:
        print(f"cxrtl predict: refused {line}", file=sys.stderr)
    print(
        f"{len(result.predictions)} image(s) predicted with {model.name} (sha256 {model.sha256[:12]}), "
        f"{len(result.refused)} refused; {args.out / 'predictions.csv'}"
    )
    return EXIT_REFUSED if result.refused else 0
