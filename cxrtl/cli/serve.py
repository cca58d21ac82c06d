"""``cxrtl serve``: the champion (or another model) behind KServe's model server, open inference protocol v2."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cxrtl.cli.options import add_device_option
from cxrtl.cli.predict import add_model_options, chosen_model

DEFAULT_PORT = 8080  # KServe's, which its InferenceService sends requests to


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="answer v2 inference requests (REST) with the champion or another model, through KServe",
        description="POST /v2/models/NAME/infer with one BYTES input named 'image': PNG, JPEG or DICOM files, "
        "base64-encoded; the answer gives each one's COVID probability and decision, read and computed as "
        "'cxrtl predict' does. Runs until stopped. Research use, not a medical device.",
    )
    add_model_options(p)
    p.add_argument("--name", default="cxrtl", help="the model's name in the URL (default: %(default)s)")
    p.add_argument("--http-port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    add_device_option(p)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from cxrtl.serve import serve

    with tempfile.TemporaryDirectory(prefix="cxrtl-serve-") as tmp:
        serve(chosen_model(args, Path(tmp)), args.name, args.http_port, args.device)
    return 0
