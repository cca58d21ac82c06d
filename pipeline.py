#!/usr/bin/env python
"""The cxrtl Kubeflow pipeline and its command line.

    python pipeline.py compile [-o cxrtl.yaml]       the IR YAML for Kubeflow Pipelines
    python pipeline.py run --demo                    the same pipeline, locally, on synthetic data
    python pipeline.py run --demo --runner docker    ... with each task in its component's image
    python pipeline.py submit --host URL ...         upload, start a run, print its UI link
    python pipeline.py schedule --host URL --cron ...  retrain on a schedule
    python pipeline.py status RUN_ID --wait          follow a run on the cluster

ingest → check-changes → [if changed] preprocess → for each weight source (in parallel, on GPUs):
train → evaluate; then promote the best model if it beats the champion, and report.
"""

import argparse
import atexit
import dataclasses
import inspect
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kfp import compiler, dsl, kubernetes

from components.placement import KAGGLE_SECRET_KEYS, ClusterOptions, add_cluster_options, cluster_options
from components.placement import on_cpu as _on_cpu
from components.placement import on_gpu as _on_gpu
from cxrtl import __version__
from cxrtl.cli import Parser, run_command
from cxrtl.cli.options import add_setting_options, given_settings
from cxrtl.errors import CxrtlError
from cxrtl.settings import SETTINGS, TRAIN_RUN_SETTINGS, RunSettings, option, settings_named, value_type

PIPELINE_NAME = "cxrtl"
DEFAULT_STORE = "s3://cxrtl"


def build_pipeline(options: ClusterOptions | None = None, train_device: str = "cuda"):
    """``train_device``: "cuda" where train lands on a GPU node (without a usable GPU that source fails in one
    line: cxrtl.device); "auto" for local runs, which train on whatever the machine has."""
    # Imported here: the components read their images from the kustomization, and a broken one is
    # then a one-line error of the command rather than an import traceback.
    from components.check_changes import check_changes
    from components.check_weights import check_weights
    from components.evaluate import evaluate
    from components.ingest import ingest
    from components.preprocess import preprocess
    from components.promote import promote
    from components.report import report
    from components.run_status import run_status
    from components.train import train

    options = options or ClusterOptions()

    signature = pipeline_signature()

    # KFP calls the function with the parameters in ``signature``'s order and compiles them from it.
    def cxrtl_pipeline(*values: Any) -> None:
        p = SimpleNamespace(**signature.bind(*values).arguments)
        # "kaggle" names the latest version; the step reuses the archive from the store when version and
        # sha256 are unchanged.
        raw = _on_cpu(ingest(source=p.dataset_source, store=p.store), options)
        kubernetes.use_secret_as_env(
            raw,
            options.kaggle_secret,
            {key: key for key in KAGGLE_SECRET_KEYS},
            optional=True,
        )
        weights = _on_cpu(
            check_weights(
                store=p.store, sources=p.sources, skip_missing=p.skip_missing_weights, seed=p.seed, repeats=p.repeats
            ),
            options,
        )
        # What check-changes fingerprints and train applies on top of the recipe (the seed: each training's).
        training = {name: getattr(p, name) for name in ("epochs", "batch_size", "learning_rate", "repeats")}
        check = _on_cpu(
            check_changes(
                dataset=raw.outputs["Output"],
                store=p.store,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                # What trains: weights put in later make the next run retrain.
                sources=weights.outputs["sources"],
                recipe=p.recipe,
                image_size=p.image_size,
                seed=p.seed,
                force=p.force,
                **training,
            ),
            options,
        )
        with dsl.If(check.outputs["Output"] == True, name="retrain"):  # noqa: E712 (a KFP condition, not a test)
            # The prepared data and the models go from step to step by store key (cxrtl.artifacts): KFP's own
            # object store, shared by the cluster and never cleaned, keeps only small references.
            data = _on_cpu(
                preprocess(
                    raw=raw.outputs["raw"],
                    recipe=p.recipe,
                    image_size=p.image_size,
                    seed=p.seed,
                    store=p.store,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                ),
                options,
            )
            # A training per source whose weights check-weights found in the store (not the parameter as
            # given) and per training seed; every one on the one split preprocess drew. A training that fails
            # ends its task successfully with the failure as its output (cxrtl.failures: KFP cannot collect the
            # iterations that finished once one has failed), and the run fails at its end, in run-status.
            with dsl.ParallelFor(
                weights.outputs["trainings"], parallelism=options.parallelism, name="weight-sources"
            ) as training_item:
                model = _on_gpu(
                    train(
                        data=data.outputs["data"],
                        source=training_item.source,
                        seed=training_item.seed,
                        store=p.store,
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                        force=p.force,
                        device=train_device,
                        **training,
                        **{name: getattr(p, name) for name in TRAIN_RUN_SETTINGS},
                    ),
                    options,
                )
                scored = _on_cpu(
                    evaluate(
                        data=data.outputs["data"],
                        model=model.outputs["model"],
                        store=p.store,
                        masked=p.masked_evaluation,
                    ),
                    options,
                )
            decision = _on_cpu(
                promote(
                    data=data.outputs["data"],
                    results=dsl.Collected(scored.outputs["results"]),
                    store=p.store,
                    metric=p.promotion_metric,
                    margin=p.promotion_margin,
                    despite_failures=p.promote_despite_failures,
                ),
                options,
            )
            reported = _on_cpu(
                report(
                    results=dsl.Collected(scored.outputs["results"]),
                    decision=decision.output,
                    skipped=weights.outputs["skipped"],
                    store=p.store,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                ),
                options,
            )
            # Its failure is the run's verdict, not a fault to retry.
            _on_cpu(
                run_status(summary=reported.outputs["Output"], store=p.store, prune=p.prune_store), options
            ).set_retry(num_retries=0)

    cxrtl_pipeline.__signature__ = signature
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="COVID-19 vs Normal chest X-rays: ResNet50 fine-tuned from ten pretrained-weight sources "
        "(Hossain et al. 2022), compared, and the best promoted to champion.",
    )(cxrtl_pipeline)


def pipeline_signature() -> inspect.Signature:
    """The pipeline's parameters: where the data and the store are, then every run setting."""
    defaults = RunSettings().to_pipeline()
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    where = [
        inspect.Parameter("dataset_source", keyword, default="kaggle", annotation=str),
        inspect.Parameter("store", keyword, default=DEFAULT_STORE, annotation=str),
    ]
    settings = [
        inspect.Parameter(f.name, keyword, default=defaults[f.name], annotation=value_type(f))
        for f in dataclasses.fields(RunSettings)
    ]
    return inspect.Signature(where + settings)


def compile_pipeline(output: Path, options: ClusterOptions | None = None) -> Path:
    compiler.Compiler().compile(build_pipeline(options), str(output))
    return output


# ---------------------------------------------------------------------------------------------------------------
# Command line


def add_compile_command(
    sub: argparse._SubParsersAction, build: Callable[[ClusterOptions], Any], default: Path, about: str
) -> None:
    """``compile [-o FILE] [cluster options]``: the IR YAML of ``build(options)`` (this pipeline's, and
    predict_pipeline.py's)."""
    p = sub.add_parser("compile", help=about)
    p.add_argument("-o", "--output", type=Path, default=default, help="the file to write")
    add_cluster_options(p)
    p.set_defaults(func=lambda args: _compile(args, build))


def _compile(args: argparse.Namespace, build: Callable[[ClusterOptions], Any]) -> None:
    options = cluster_options(args)
    if not args.output.parent.is_dir():
        raise CxrtlError(f"-o {args.output}: there is no folder {args.output.parent}")
    try:
        compiler.Compiler().compile(build(options), str(args.output))
    except OSError as exc:  # unwritable, a folder of that name, a full disk
        raise CxrtlError(f"-o {args.output}: cannot write it ({exc.strerror or exc})") from None
    print(args.output)


def _compile_to_temp(args: argparse.Namespace) -> Path:
    folder = tempfile.mkdtemp(prefix="cxrtl-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return compile_pipeline(Path(folder) / "cxrtl.yaml", cluster_options(args))


def _run(args: argparse.Namespace) -> None:
    from runners import local

    # Retries exist for pre-empted cluster nodes; locally they would only repeat a failure after a back-off.
    local.run(args, lambda: build_pipeline(ClusterOptions(retries=0), train_device="auto"))


def _cluster_params(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    """The run's parameters: ``--param``'s and the run settings given as options, each setting checked as ``run``
    checks it, then what a cluster's pods can read; all before anything is uploaded."""
    given = given_settings(args)
    both = sorted(set(given) & set(params))
    if both:
        raise CxrtlError(f"{option(both[0])} and --param {both[0]} both given: give one")
    params = {**params, **given}
    with settings_named(lambda name: option(name) if name in given else f"--param {name}"):
        RunSettings.from_pipeline(**{name: value for name, value in params.items() if name in SETTINGS})
    store = params.get("store", DEFAULT_STORE)
    if not store.startswith("s3://"):
        raise CxrtlError(f"--param store={store}: on a cluster the store must be an s3:// bucket the pods reach")
    source = params.get("dataset_source", "kaggle")
    if source != "kaggle" and not source.startswith("s3://"):
        raise CxrtlError(
            f"--param dataset_source={source}: the cluster's pods cannot read this machine's files; either upload "
            f"the zip to the store (`cxrtl store --store {store} put uploads/NAME.zip ZIP`, then "
            f"--param dataset_source={store}/uploads/NAME.zip) or use dataset_source=kaggle with the optional "
            "Kaggle Secret (--kaggle-secret)"
        )
    return params


def build_parser() -> argparse.ArgumentParser:
    from runners.kfp_api import add_cluster_arguments, add_status_command
    from runners.local import add_run_options

    parser = Parser(
        prog="pipeline.py",
        description=__doc__,
        epilog="Without a command: this help (exit status 0). A mistake: one line, exit status 2.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pipeline.py (cxrtl {__version__})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_compile_command(sub, build_pipeline, Path("cxrtl.yaml"), "write the pipeline's IR YAML")
    p = sub.add_parser("run", help="run the pipeline locally with kfp.local")
    add_run_options(p)
    p.set_defaults(func=_run)
    add_cluster_arguments(sub, _compile_to_temp, _cluster_params)
    add_status_command(sub, DEFAULT_STORE)
    for name in ("submit", "schedule"):
        add_cluster_options(sub.choices[name])
        group = sub.choices[name].add_argument_group(
            "run settings (pipeline parameters; --param NAME=VALUE sets them too)"
        )
        add_setting_options(group, check=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, lambda args: logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
