"""Sub-commands for the pipeline's steps, so a person can run any one of them by hand."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrtl.cli.options import add_device_option, add_setting_options, checked, given_settings
from cxrtl.data import image_size_problem
from cxrtl.demo_data import DEMO_PER_CLASS
from cxrtl.ingest import IngestLimits
from cxrtl.recipes import PAPER, PRECISIONS, RECIPES, batch_size_problem
from cxrtl.settings import TRAIN_RUN_SETTINGS, RunSettings, setting_problem


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo-data", help="write a synthetic dataset in the Kaggle layout, zipped")
    p.add_argument("out", type=Path, help="folder to write the zip into")
    p.add_argument("--per-class", type=_per_class, default=DEMO_PER_CLASS, help="images per class")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the images drawn")
    p.add_argument(
        "--image-size", type=_image_size, default=299, help="image side in pixels (default 299, as Kaggle's)"
    )
    p.set_defaults(func=_demo_data)

    p = subparsers.add_parser("ingest", help="fetch the raw dataset (Kaggle, a zip or a folder) and check it")
    p.add_argument(
        "--source",
        required=True,
        help="'kaggle', a .zip file, s3://BUCKET/KEY of a zip put there with `cxrtl store put`, "
        "or a folder in the Kaggle layout",
    )
    p.add_argument("--out", required=True, type=Path, help="folder to extract into (must not exist or be empty)")
    p.add_argument("--store", help="store URL that caches the raw archive (default: no caching)")
    limits = IngestLimits()
    p.add_argument(
        "--max-bytes", type=_positive_int, default=limits.max_bytes, help="unpacked bytes in all (default %(default)s)"
    )
    p.add_argument("--max-files", type=_positive_int, default=limits.max_files, help="files (default %(default)s)")
    p.add_argument(
        "--max-ratio",
        type=checked(float, lambda v: None if 1 <= v < float("inf") else f"must be at least 1, got {v}"),
        default=limits.max_ratio,
        help="unpacked/packed size of a zip member, and of the whole zip, past 1 MiB (default %(default)s)",
    )
    p.set_defaults(func=_ingest)

    p = subparsers.add_parser("preprocess", help="decode, resize and split COVID vs Normal into arrays")
    p.add_argument("--raw", required=True, type=Path, help="an ingested folder")
    p.add_argument("--out", required=True, type=Path, help="folder for the arrays, labels, split and info.json")
    p.add_argument(
        "--image-size",
        type=_image_size,
        default=RunSettings.image_size,
        help="image side in pixels (default %(default)s)",
    )
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=RunSettings.recipe,
        help="which split and classes (docs/method.md; default %(default)s)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of the paper recipe's split (default %(default)s)")
    p.set_defaults(func=_preprocess)

    p = subparsers.add_parser("train", help="fine-tune ResNet50 from one weight source")
    p.add_argument("--data", required=True, type=Path, help="a preprocessed folder")
    p.add_argument("--weights", required=True, metavar="SOURCE", help="weight source name (see 'cxrtl weights list')")
    p.add_argument("--out", required=True, type=Path, help="folder for the best model")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="default: the recipe the data was preprocessed with")
    add_setting_options(p, TRAIN_SETTINGS, check=True)
    p.add_argument(
        "--freeze-backbone-after",
        type=_epochs_or_never,
        metavar="N|never",
        help="train the whole network for N epochs, then the head only (default: the recipe's; the study: 1)",
    )
    p.add_argument(
        "--recalibrate-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="recompute BatchNorm statistics over the training split before each evaluation (default: the recipe's)",
    )
    add_device_option(p, default=None)
    p.add_argument(
        "--store", help="store URL for weights and checkpoints (default: $CXRTL_STORE, else ~/.cache/cxrtl/store)"
    )
    p.add_argument("--run-id", type=run_id_option, help="resume this run's checkpoints; default: a new run id")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="test-split metrics and predictions of a trained model")
    p.add_argument("--data", required=True, type=Path, help="a preprocessed folder")
    p.add_argument("--model", required=True, type=Path, help="a folder written by 'cxrtl train'")
    p.add_argument("--out", required=True, type=Path, help="folder for metrics.json, predictions.csv and figures")
    add_device_option(p)
    p.add_argument(
        "--masked", action="store_true", help="also evaluate with the lungs blacked out (needs the dataset's masks)"
    )
    p.add_argument(
        "--allow-training-images",
        action="store_true",
        help="score the model even on test images it was trained on (refused by default; the report warns)",
    )
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("report", help="compare weight sources in one table (Markdown, HTML, CSV)")
    p.add_argument("--results", required=True, type=Path, nargs="+", help="folders written by 'cxrtl evaluate'")
    p.add_argument("--out", required=True, type=Path, help="folder for the report's files")
    p.set_defaults(func=_report)

    p = subparsers.add_parser(
        "bench", help="our training step beside its compute bound and the study's way, data paths, checkpoint writes"
    )
    p.add_argument("--quick", action="store_true", help="64 px, batch 16, 3 timed batches: under a minute on 2 cores")
    p.add_argument("--image-size", type=_image_size, help=f"default {RunSettings.image_size} (64 with --quick)")
    p.add_argument(
        "--batch-size",
        type=checked(int, batch_size_problem),
        help=f"default {PAPER.training.batch_size}, as the study (16 with --quick)",
    )
    p.add_argument("--batches", type=_positive_int, help="timed batches after a warm-up (default 5; 3 with --quick)")
    add_device_option(p)
    p.add_argument("--precision", choices=PRECISIONS, help="auto (default), fp32, bf16, fp16")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default on")
    p.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile ours (default off)"
    )
    p.add_argument(
        "--store", help="store to time a checkpoint write to (default: $CXRTL_STORE, else ~/.cache/cxrtl/store)"
    )
    p.set_defaults(func=_bench)


# Each option is checked as argparse reads it, so that a bad value is refused before torch or the data load.


def _setting(name: str, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A value of the pipeline setting ``name``, checked as the pipeline checks it."""
    return checked(parse, lambda value: setting_problem(name, value))


def _run_id_problem(value: str) -> str | None:
    from cxrtl.store.keys import run_id_problem

    return run_id_problem(value)


def _per_class_problem(value: int) -> str | None:
    from cxrtl.demo_data import per_class_problem

    return per_class_problem(value)


_seed = _setting("seed", int)
_per_class = checked(int, _per_class_problem)
_image_size = checked(int, image_size_problem)
_positive_int = checked(int, lambda value: None if value > 0 else f"must be positive, got {value}")
run_id_option = checked(str, _run_id_problem)


def _epochs_or_never(value: str) -> int | str:
    return value if value == "never" else int(value)


def _demo_data(args: argparse.Namespace) -> None:
    from cxrtl.demo_data import write_demo_dataset

    print(write_demo_dataset(args.out, per_class=args.per_class, seed=args.seed, image_size=args.image_size))


def _ingest(args: argparse.Namespace) -> None:
    from cxrtl.ingest import ingest
    from cxrtl.store import open_store

    limits = IngestLimits(args.max_bytes, args.max_files, args.max_ratio)
    result = ingest(args.source, args.out, store=open_store(args.store) if args.store else None, limits=limits)
    print(result.summary())


def _preprocess(args: argparse.Namespace) -> None:
    from cxrtl.preprocess import preprocess, split_sizes

    data = preprocess(args.raw, args.out, recipe=args.recipe, image_size=args.image_size, seed=args.seed)
    print(f"{len(data.ids)} images of {data.image_size}x{data.image_size} written to {args.out}")
    print(f"split sizes by class: {split_sizes(data.info.counts)}")
    d = data.info.duplicates
    print(
        f"duplicates kept within one split: {d.exact_duplicate_groups} exact and {d.near_duplicate_groups} "
        f"near-duplicate group(s), {d.images_in_duplicate_groups} images"
    )


# `cxrtl train`'s options that are run settings, as the pipeline's train step takes them.
TRAIN_SETTINGS = ("epochs", "batch_size", "learning_rate", "seed", *TRAIN_RUN_SETTINGS)


def _train(args: argparse.Namespace) -> None:
    from cxrtl.checkpoints import new_run_id
    from cxrtl.store import open_store
    from cxrtl.train import config_for_data, train

    others = {k: getattr(args, k) for k in ("freeze_backbone_after", "recalibrate_bn", "device")}
    overrides = given_settings(args, TRAIN_SETTINGS) | {k: v for k, v in others.items() if v is not None}
    if overrides.get("freeze_backbone_after") == "never":
        overrides["freeze_backbone_after"] = None
    config = config_for_data(args.data, args.recipe, **overrides)
    run_id = args.run_id or new_run_id()
    result = train(args.data, args.weights, args.out, config, open_store(args.store), run_id)
    meta = result.metadata
    print(
        f"{args.weights}: best epoch {meta.best_epoch} ({meta.selection_split} {meta.config.training.selection_metric} "
        f"{meta.selection_score:.4f}), run {run_id}, model {result.model_path}"
    )


def _evaluate(args: argparse.Namespace) -> None:
    from cxrtl.evaluate import evaluate

    evaluation = evaluate(
        args.data, args.model, args.out, device=args.device, masked=args.masked, allow_seen=args.allow_training_images
    )
    print("  ".join(f"{k} {'undefined' if math.isnan(v) else f'{v:.4f}'}" for k, v in evaluation.metrics.items()))
    masked = evaluation.checks.masked if evaluation.checks else None
    if masked:
        flag = "  <- may be reading something other than the lungs" if masked.flagged else ""
        print(f"lungs blacked out: balanced accuracy {masked.balanced_accuracy:.4f}{flag}")


def _report(args: argparse.Namespace) -> None:
    from cxrtl.report import report_from_folders

    print(report_from_folders(args.results, args.out).text())


def _bench(args: argparse.Namespace) -> None:
    import json

    from cxrtl.bench import bench
    from cxrtl.recipes import TrainConfig
    from cxrtl.store import open_store

    quick = args.quick
    switches = {k: getattr(args, k) for k in ("precision", "channels_last", "compile") if getattr(args, k) is not None}
    result = bench(
        open_store(args.store),
        image_size=args.image_size or (64 if quick else RunSettings.image_size),
        batch_size=args.batch_size or (16 if quick else PAPER.training.batch_size),
        batches=args.batches or (3 if quick else 5),
        device=args.device,
        config=TrainConfig.from_recipe("recommended", **switches),
    )
    print(result.table())
    print(json.dumps(result.as_dict()))
