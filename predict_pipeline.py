#!/usr/bin/env python
"""Batch prediction on a cluster: the champion's COVID probability for every image under an s3:// prefix.

    python predict_pipeline.py compile [-o cxrtl-predict.yaml] [cluster options]

One task, on the CPU image, with the store's settings as every task of pipeline.py has them: predictions.csv
and predictions.html in the store under predictions/RUN_ID/, the page in the KFP UI (the task's
Visualizations). Upload the YAML in the KFP UI (Pipelines > Upload pipeline) and start a run with
``images`` = s3://BUCKET/PREFIX. Research use only, not a medical device.
"""

import argparse
import logging
import sys
from pathlib import Path

from kfp import dsl

from components.placement import ClusterOptions, on_cpu
from cxrtl import __version__
from cxrtl.cli import Parser, run_command
from pipeline import DEFAULT_STORE, add_compile_command

PIPELINE_NAME = "cxrtl-predict"


def build_predict_pipeline(options: ClusterOptions | None = None):
    from components.predict import predict

    options = options or ClusterOptions()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="The cxrtl champion's COVID-19 probability for every chest X-ray image under an s3:// prefix.",
    )
    def cxrtl_predict(images: str, store: str = DEFAULT_STORE) -> None:
        on_cpu(predict(images=images, store=store, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), options)

    return cxrtl_predict


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="predict_pipeline.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"predict_pipeline.py (cxrtl {__version__})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    about = "write the batch-prediction pipeline's IR YAML"
    add_compile_command(sub, build_predict_pipeline, Path("cxrtl-predict.yaml"), about)
    return run_command(parser, argv, lambda args: logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
