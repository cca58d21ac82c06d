"""Where each artifact lives in the store: the one module that builds (and parses) store keys.

Keys are ``/``-separated paths inside the store (an ``s3://BUCKET/PREFIX`` store puts them under
``PREFIX``). The complete layout, one key per line::

    weights/SOURCE/SHA256.pth                     a weight file as published (or a stand-in), named by its sha256
    weights/SOURCE/SHA256.json                    its record (cxrtl.weights.stored)
    weights/SOURCE/current.json                   which of the source's files train steps get
    datasets/DATASET/VERSION/archive.zip          the raw dataset archive, cached by ingest (``:`` in VERSION as ``-``)
    datasets/DATASET/VERSION/ingest.json          its ingest record, written after the archive
    trainings/SOURCE/TRAINING/identity.json       what the training is (cxrtl.checkpoints.training_id: TRAINING is
                                                  its hash): dataset, image size, recipe, settings, weights, seed
    trainings/SOURCE/TRAINING/owner.json          the run id training it now; a run that took it over stops the other
    trainings/SOURCE/TRAINING/checkpoints/epoch-NNN.pt  checkpoint of epoch NNN (or of its part done at a SIGTERM)
    trainings/SOURCE/TRAINING/best-epoch-NNN.pt   the best model so far, until the training's model is published
    trainings/SOURCE/TRAINING/done.json           the finished training: the run whose model it published, and how
    runs/RUN_ID/SOURCE/identity.json              the identity the run trains the source with, written before its
                                                  first epoch: a second run of the same id with another is refused
                                                  (with repeats, each training's RUN_ID is RUN_ID-seedN)
    runs/RUN_ID/SOURCE/failed.json                why the source's training failed in the run (cxrtl.failures)
    prepared/RUN_ID/NAME                          the run's prepared dataset (cxrtl.data), handed to train and evaluate
    models/SOURCE/RUN_ID/NAME                     model.pt, model.json (cxrtl.records.ModelMetadata) and the
                                                  evaluation: metrics.json, predictions.csv, roc.json
    reports/RUN_ID/NAME                           report.txt, report.md, report.html, results.csv, pairs.csv
    predictions/RUN_ID/NAME                       a batch prediction run's predictions.csv and predictions.html
                                                  (predict_pipeline.py); never pruned
    champion/current.json                         the pointer: which version is the champion (cxrtl.champion),
                                                  only ever replaced by a compare-and-swap
    champion/versions/RUN_ID/SOURCE/NAME          a champion version, never changed once the pointer names it:
                                                  model.pt, model.json, seen.json, card.json
                                                  (cxrtl.records.ChampionCard), card.md and decision.json
    champion/decisions/RUN_ID.json                the promotion decision of the run whose best model is RUN_ID's
    champion/history/RUN_ID.json                  the card of every promotion
    champion/NAME                                 the old layout (model.pt, model.json, seen.json, card.md,
                                                  card.json): read while no pointer exists, moved into a version
                                                  by the next promotion
    state/last-success.json                       the last successful run and its fingerprint (cxrtl.retrain)
    state/runs/RUN_ID.json                        a run's fingerprint, adopted when the run succeeds
    state/conditional-write-probes/HEX            an S3 store's probe that its server honours conditional writes,
                                                  removed at once

``NNN`` is the epoch, at least three digits. Checkpoints are keyed by what the training is, not by the run:
the next run with the same data, weights and settings resumes an unfinished training, or takes a finished one's
model, whatever its run id. A ``RUN_ID`` is letters, digits, ``.``, ``_`` and ``-``, starting
with a letter or digit (KFP's are UUIDs; ``cxrtl train``'s ``local-DATE-TIME-HEX``). File names inside a
folder (``NAME``) belong to the step that writes them and are passed in.
"""

from __future__ import annotations

import re

_WEIGHTS = "weights"
_DATASETS = "datasets"
_RUNS = "runs"
_TRAININGS = "trainings"
_MODELS = "models"
_PREPARED = "prepared"
_REPORTS = "reports"
_PREDICTIONS = "predictions"
_CHAMPION = "champion"
_STATE = "state"

# A training's records beside its checkpoints (cxrtl.checkpoints): what it is, which run holds it, its model
IDENTITY_FILE = "identity.json"
OWNER_FILE = "owner.json"
DONE_FILE = "done.json"
_WEIGHTS_FILE = re.compile(rf"{_WEIGHTS}/([^/]+)/([^/]+)\.pth")
_CHECKPOINT_FILE = re.compile(r"(?:best-)?epoch-(\d{3,})\.pt")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


# --- weights ------------------------------------------------------------------------------------


def weights_key(source: str, sha256: str) -> str:
    return f"{_WEIGHTS}/{source}/{sha256}.pth"


def weights_record_key(source: str, sha256: str) -> str:
    return f"{_WEIGHTS}/{source}/{sha256}.json"


def current_weights_key(source: str) -> str:
    return f"{_WEIGHTS}/{source}/current.json"


def weights_prefix() -> str:
    """What every weight file's key starts with, for listing them."""
    return f"{_WEIGHTS}/"


def parse_weights_key(key: str) -> tuple[str, str] | None:
    """(source, sha256) of a weight file's key, as its name says; None for any other key."""
    match = _WEIGHTS_FILE.fullmatch(key)
    return (match.group(1), match.group(2)) if match else None


# --- datasets -----------------------------------------------------------------------------------


def dataset_key(dataset: str, version: str, name: str) -> str:
    # Kaggle-less versions read "sha256:<hex>"; a colon is awkward in paths and S3 console URLs.
    return f"{_DATASETS}/{dataset}/{version.replace(':', '-')}/{name}"


# --- training checkpoints -----------------------------------------------------------------------


def run_id_problem(run_id: str) -> str | None:
    """What keeps ``run_id`` from naming a run in the store (a ``/`` or ``..`` would climb out of it), or None."""
    if _RUN_ID.fullmatch(run_id):
        return None
    return f"must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit; got {run_id!r}"


def run_identity_key(run_id: str, source: str) -> str:
    return f"{run_prefix(run_id, source)}identity.json"


def failure_key(run_id: str, source: str) -> str:
    return f"{run_prefix(run_id, source)}failed.json"


def run_prefix(run_id: str, source: str) -> str:
    """What one source's training in ``run_id`` records about the run, ending in ``/``."""
    return f"{_RUNS}/{run_id}/{source}/"


def runs_prefix() -> str:
    return f"{_RUNS}/"


def training_prefix(source: str, training: str) -> str:
    """Everything one training (``training``: :func:`cxrtl.checkpoints.training_id`) keeps, ending in ``/``."""
    return f"{_TRAININGS}/{source}/{training}/"


def trainings_prefix() -> str:
    return f"{_TRAININGS}/"


def training_record_key(source: str, training: str, name: str) -> str:
    """``identity.json``, ``owner.json`` or ``done.json`` of a training."""
    return f"{training_prefix(source, training)}{name}"


def checkpoints_prefix(source: str, training: str) -> str:
    return f"{training_prefix(source, training)}checkpoints/"


def checkpoint_key(source: str, training: str, epoch: int) -> str:
    return f"{checkpoints_prefix(source, training)}epoch-{epoch:03d}.pt"


def best_checkpoints_prefix(source: str, training: str) -> str:
    return f"{training_prefix(source, training)}best-"


def best_checkpoint_key(source: str, training: str, epoch: int) -> str:
    return f"{best_checkpoints_prefix(source, training)}epoch-{epoch:03d}.pt"


def checkpoint_epoch(key: str) -> int | None:
    """The epoch of a checkpoint or best-model key; None for any other key."""
    match = _CHECKPOINT_FILE.fullmatch(key.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


# --- models, reports, champion, state -----------------------------------------------------------


def training_run_id(run_id: str, seed: int, repeats: int) -> str:
    """The run id one training of a pipeline run keeps its checkpoints and model under: the run's own with
    one training per source, ``RUN_ID-seedN`` with several (``repeats``)."""
    return run_id if repeats == 1 else f"{run_id}-seed{seed}"


def model_prefix(source: str, run_id: str) -> str:
    return f"{_MODELS}/{source}/{run_id}/"


def model_key(source: str, run_id: str, name: str) -> str:
    """A file of the model ``source`` gave in ``run_id``: the model, its metadata or its evaluation."""
    return f"{model_prefix(source, run_id)}{name}"


def predictions_key(run_id: str, name: str) -> str:
    return f"{_PREDICTIONS}/{run_id}/{name}"


def report_prefix(run_id: str) -> str:
    return f"{_REPORTS}/{run_id}/"


def report_key(run_id: str, name: str) -> str:
    return f"{report_prefix(run_id)}{name}"


def prepared_prefix(run_id: str) -> str:
    """The run's prepared dataset, which its steps hand each other by this key (cxrtl.artifacts)."""
    return f"{_PREPARED}/{run_id}/"


def models_prefix() -> str:
    return f"{_MODELS}/"


def reports_prefix() -> str:
    return f"{_REPORTS}/"


def champion_prefix() -> str:
    """Everything the champion keeps (its versions, pointer and history): never pruned."""
    return f"{_CHAMPION}/"


def champion_key(name: str) -> str:
    return f"{_CHAMPION}/{name}"


def champion_history_key(run_id: str) -> str:
    return f"{_CHAMPION}/history/{run_id}.json"


def champion_pointer_key() -> str:
    return f"{_CHAMPION}/current.json"


def champion_version_prefix(run_id: str, source: str) -> str:
    return f"{_CHAMPION}/versions/{run_id}/{source}/"


def champion_version_key(run_id: str, source: str, name: str) -> str:
    return f"{champion_version_prefix(run_id, source)}{name}"


def champion_decision_key(run_id: str) -> str:
    return f"{_CHAMPION}/decisions/{run_id}.json"


def conditional_write_probe_key(token: str) -> str:
    return f"{_STATE}/conditional-write-probes/{token}"


def last_success_key() -> str:
    return f"{_STATE}/last-success.json"


def pending_run_key(run_id: str) -> str:
    return f"{_STATE}/runs/{run_id}.json"
