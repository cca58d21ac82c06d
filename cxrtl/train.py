"""Fine-tune the study's ResNet50 from one weight source, with a checkpoint per epoch and resume.

:func:`train` strings together pieces that each work alone on a :class:`Session` (one source's
training in one run): :func:`open_session` (the data, and the source's weights in the network),
:func:`resume` (where the run stopped, from its newest checkpoint), :func:`run_epoch`, :func:`save_epoch`
and :func:`finish` (the best model saved and published with its metadata).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrtl import __version__
from cxrtl.checkpoints import CheckpointStore, get_payload
from cxrtl.data import POSITIVE_LABEL, PreparedData
from cxrtl.engine import Batches, EpochStats, predict, recalibrate_batchnorm, resolve_device, train_one_epoch
from cxrtl.errors import CxrtlError
from cxrtl.files import check_output_folder, staged_folder
from cxrtl.metrics import selection_score, youden_threshold
from cxrtl.model import NUM_CLASSES, build_model, set_backbone_trainable
from cxrtl.recipes import TrainConfig
from cxrtl.records import DatasetRef, ModelMetadata
from cxrtl.seen import SEEN_FILE, Seen
from cxrtl.store import Store, keys
from cxrtl.weights import StoredWeights, get_source, load_backbone_state_dict, resolve_weights

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
METADATA_FILE = "model.json"
_HISTORY = ("train_loss", "train_accuracy", "select_accuracy", "select_score")
# What a resumed run may change: more epochs, another device, more checkpoints kept.
_RESUMABLE_CHANGES = ("epochs", "device", "keep_checkpoints")


def config_for_data(data_dir: Path, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """The training set-up for a prepared dataset: its own recipe unless ``recipe`` names another."""
    return TrainConfig.from_recipe(recipe or PreparedData.load(data_dir).info.get("recipe", "paper"), **overrides)


@dataclass
class TrainResult:
    model_path: Path
    metadata: ModelMetadata


@dataclass
class Session:
    """One source's training in one run: what every piece of it works on."""

    source: str
    run_id: str
    config: TrainConfig
    data: PreparedData
    weights: StoredWeights
    backbone_tensors: int  # loaded from the weights
    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    train: Batches
    select: Batches  # the split whose selection metric picks the best epoch
    checkpoints: CheckpointStore

    @property
    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with its checkpoint."""
        settings = {k: v for k, v in self.config.to_dict().items() if k not in _RESUMABLE_CHANGES}
        return {
            "source": self.source,
            "weights_sha256": self.weights.sha256,
            "recipe": self.config.recipe,
            "settings": settings,
        }


@dataclass
class Progress:
    """How far a run got: the epochs done, their history and the best of them."""

    epoch: int = 0  # the last epoch done
    history: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in _HISTORY})
    best_epoch: int = 0
    best_score: float = -1.0  # of the recipe's selection metric
    best_state: dict[str, torch.Tensor] | None = None
    resumed_from: int | None = None  # the epoch of the checkpoint this process started from

    @property
    def best(self) -> dict[str, Any]:
        return {"epoch": self.best_epoch, "score": self.best_score}


@dataclass
class EpochResult:
    stats: EpochStats
    select_accuracy: float
    select_score: float  # the recipe's selection metric on the selection split


def open_session(data_dir: Path, source: str, config: TrainConfig, store: Store, run_id: str) -> Session:
    """Check the data against the recipe, then build the network from ``source``'s stored weights."""
    get_source(source)  # an unknown name fails before anything is read
    data = PreparedData.load(data_dir)
    training = config.training
    if len(data.indices("train")) == 0:
        raise CxrtlError(f"{data_dir}: the training split is empty")
    if len(data.indices(training.selection_split)) == 0:
        raise CxrtlError(
            f"{data_dir}: recipe {config.recipe!r} picks the best epoch on the {training.selection_split!r} split, "
            f"which this dataset does not have; preprocess it with --recipe {config.recipe}"
        )
    selection_labels = data.labels[data.indices(training.selection_split)]
    if training.selection_metric == "roc_auc" and len(np.unique(selection_labels)) < 2:
        raise CxrtlError(
            f"{data_dir}: the {training.selection_split!r} split holds one class only; "
            "ROC AUC cannot pick the best epoch there"
        )
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # before the network is built: it draws the head's initial weights

    with tempfile.TemporaryDirectory(prefix="cxrtl-weights-") as cache:
        weights = resolve_weights(store, source, Path(cache))
        backbone = load_backbone_state_dict(source, weights.path)
    if weights.stand_in:
        logger.warning("%s: training from a STAND-IN checkpoint (random weights), not the published ones", source)
    logger.info("%s: loaded %d backbone tensors from weights sha256 %s", source, len(backbone), weights.sha256)
    model = build_model(backbone).to(device)
    train_batches = Batches.of(data, "train", training.batch_size, training.normalize, device)
    class_weights = _class_weights(data.labels[train_batches.indices]) if training.class_weighted_loss else None
    return Session(
        source=source,
        run_id=run_id,
        config=config,
        data=data,
        weights=weights,
        backbone_tensors=len(backbone),
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=training.learning_rate),
        criterion=nn.CrossEntropyLoss(weight=class_weights).to(device),
        train=train_batches,
        select=Batches.of(data, training.selection_split, training.batch_size, training.normalize, device),
        checkpoints=CheckpointStore(store, run_id, source, keep=config.keep_checkpoints),
    )


def resume(session: Session) -> Progress:
    """The progress of the run's newest checkpoint, loaded into the session; a fresh start without one."""
    # Claimed before the first epoch: a second run of this id with other settings is refused here.
    _check_resumable(session.checkpoints.claim(session.identity), session.identity, session.run_id)
    saved = session.checkpoints.latest()
    if saved is None:
        return Progress()
    _check_resumable(saved, session.identity, session.run_id)
    epochs = session.config.training.epochs
    if saved["epoch"] > epochs:
        # Its model would be of more epochs than its model.json says.
        raise CxrtlError(
            f"run {session.run_id}: {session.source} has trained {saved['epoch']} epochs already, more than "
            f"epochs={epochs}; give at least {saved['epoch']} or start a new run id"
        )
    session.model.load_state_dict(saved["model"])
    session.optimizer.load_state_dict(saved["optimizer"])
    best = saved["best"]
    logger.info("%s: resuming run %s from the checkpoint of epoch %d", session.source, session.run_id, saved["epoch"])
    return Progress(
        epoch=saved["epoch"],
        history=saved["history"],
        best_epoch=best["epoch"],
        best_score=best["score"],
        best_state=_best_state(session.checkpoints, best["epoch"]),
        resumed_from=saved["epoch"],
    )


def run_epoch(session: Session, epoch: int) -> EpochResult:
    """Train one epoch, then measure accuracy and the selection metric on the selection split."""
    config, training = session.config, session.config.training
    # Seeded per epoch, so a resumed run shuffles and drops out exactly as an uninterrupted one would.
    torch.manual_seed(config.seed * 100_003 + epoch)
    rng = np.random.default_rng([config.seed, epoch])
    set_backbone_trainable(session.model, training.backbone_trainable(epoch))
    log_prefix = f"{session.source} epoch {epoch}/{training.epochs}"
    stats = train_one_epoch(
        session.model,
        session.train.shuffled(rng),
        optimizer=session.optimizer,
        criterion=session.criterion,
        log_prefix=log_prefix,
    )
    if training.recalibrate_bn:
        recalibrate_batchnorm(session.model, session.train)
    probs = predict(session.model, session.select)
    labels = session.data.labels[session.select.indices]
    accuracy = float((probs.argmax(1) == labels).mean())
    score = selection_score(training.selection_metric, labels, probs[:, POSITIVE_LABEL])
    logger.info(
        "%s: train loss %.4f acc %.4f, %s acc %.4f %s %.4f (%.1f img/s)",
        log_prefix,
        stats.loss,
        stats.accuracy,
        training.selection_split,
        accuracy,
        training.selection_metric,
        score,
        stats.images_per_second,
    )
    return EpochResult(stats, accuracy, score)


def save_epoch(session: Session, progress: Progress, epoch: int, result: EpochResult) -> None:
    """Add the epoch to ``progress`` and checkpoint it (the best model first, when it is one)."""
    progress.epoch = epoch
    progress.history["train_loss"].append(result.stats.loss)
    progress.history["train_accuracy"].append(result.stats.accuracy)
    progress.history["select_accuracy"].append(result.select_accuracy)
    progress.history["select_score"].append(result.select_score)
    identity = session.identity
    # Better: a higher selection score; at an equal one (ROC AUC is often 1.0 on a small validation split),
    # a higher selection-split accuracy; then the earlier epoch.
    best_accuracy = progress.history["select_accuracy"][progress.best_epoch - 1] if progress.best_epoch else -1.0
    if (result.select_score, result.select_accuracy) > (progress.best_score, best_accuracy):
        progress.best_epoch, progress.best_score = epoch, result.select_score
        progress.best_state = {k: v.detach().cpu().clone() for k, v in session.model.state_dict().items()}
        session.checkpoints.save_best(epoch, {**identity, "epoch": epoch, "model": progress.best_state})
    session.checkpoints.save(
        epoch,
        {
            **identity,
            "epoch": epoch,
            "model": session.model.state_dict(),
            "optimizer": session.optimizer.state_dict(),
            "history": progress.history,
            "best": progress.best,
            "config": session.config.to_dict(),
        },
    )


def finish(session: Session, progress: Progress, out_dir: Path) -> TrainResult:
    """Write the best model and its metadata to ``out_dir``, publish both to the store, drop the best copy."""
    source, config, weights = session.source, session.config, session.weights
    metadata = ModelMetadata(
        source=source,
        source_description=get_source(source).description,
        weights_sha256=weights.sha256,
        weights_stand_in=weights.stand_in,
        backbone_tensors_loaded=session.backbone_tensors,
        run_id=session.run_id,
        config=config,
        best_epoch=progress.best_epoch,
        selection_split=config.training.selection_split,
        selection_score=progress.best_score,
        validation_threshold=_validation_threshold(session, progress),
        history=progress.history,
        resumed_from_epoch=progress.resumed_from,
        dataset=DatasetRef.of(session.data.info.get("dataset")),
        image_size=session.data.image_size,
        device=str(session.train.device),
        cxrtl_version=__version__,
        trained_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    seen = Seen.of(session.data, config.training.selection_split)
    model_path = save_model(out_dir, progress.best_state, metadata, seen)
    store = session.checkpoints.store
    for name in (MODEL_FILE, METADATA_FILE, *([SEEN_FILE] if seen else [])):
        store.put_file(keys.model_key(source, session.run_id, name), out_dir / name)
    session.checkpoints.drop_best()
    logger.info(
        "%s: best epoch %d (%s %s %.4f); model in %s",
        source,
        progress.best_epoch,
        config.training.selection_split,
        config.training.selection_metric,
        progress.best_score,
        out_dir,
    )
    return TrainResult(model_path, metadata)


def train(
    data_dir: Path,
    source: str,
    out_dir: Path,
    config: TrainConfig,
    store: Store,
    run_id: str,
) -> TrainResult:
    """Train from ``source``'s stored weights on the prepared data; write the best model to ``out_dir``.

    Checkpoints go to the store each epoch; if the run has some, training resumes from the newest.
    The best model goes to the store too (keys in :mod:`cxrtl.store.keys`).
    """
    problem = keys.run_id_problem(run_id)
    if problem:
        raise CxrtlError(f"run id {problem}")
    check_output_folder(out_dir, METADATA_FILE)  # before training, not after
    session = open_session(data_dir, source, config, store, run_id)
    progress = resume(session)
    for epoch in range(progress.epoch + 1, config.training.epochs + 1):
        save_epoch(session, progress, epoch, run_epoch(session, epoch))
    return finish(session, progress, out_dir)


def save_model(
    out_dir: Path, state_dict: dict[str, torch.Tensor], metadata: ModelMetadata, seen: Seen | None = None
) -> Path:
    record = metadata.to_dict()
    with staged_folder(out_dir, marker=METADATA_FILE) as staged:
        torch.save({"state_dict": state_dict, "metadata": record}, staged / MODEL_FILE)
        if seen is not None:
            (staged / SEEN_FILE).write_text(seen.to_json())
        (staged / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return out_dir / MODEL_FILE


def load_model(model_dir: Path) -> tuple[nn.Module, ModelMetadata]:
    """A trained model (eval mode, CPU) and its metadata, from a folder written by :func:`save_model`."""
    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise CxrtlError(f"{model_dir}: no {MODEL_FILE}; is this the output of 'cxrtl train'?")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model()
        model.load_state_dict(saved["state_dict"])
    except Exception as exc:  # a truncated or foreign file: say which, not a pickle traceback
        raise CxrtlError(f"{path}: not a model written by cxrtl ({type(exc).__name__})") from exc
    return model.eval(), ModelMetadata.from_dict(saved["metadata"], str(path))


def _validation_threshold(session: Session, progress: Progress) -> float | None:
    """The best model's decision threshold by Youden's J on the validation split; None without one (the paper
    recipe selects on test, where choosing a threshold too would only add optimism)."""
    if session.config.training.selection_split != "val":
        return None
    session.model.load_state_dict(progress.best_state)
    labels = session.data.labels[session.select.indices]
    return youden_threshold(labels, predict(session.model, session.select)[:, POSITIVE_LABEL])


def _best_state(checkpoints: CheckpointStore, epoch: int) -> dict[str, torch.Tensor]:
    saved = checkpoints.best(epoch)
    if saved is not None:
        return saved["model"]
    # A finished run dropped its best-so-far copy: the final model is that same state.
    key = keys.model_key(checkpoints.source, checkpoints.run_id, MODEL_FILE)
    return get_payload(checkpoints.store, key)["state_dict"]


def _class_weights(labels: np.ndarray) -> torch.Tensor:
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    return torch.tensor(len(labels) / (NUM_CLASSES * np.maximum(counts, 1)), dtype=torch.float32)


def _check_resumable(checkpoint: dict[str, Any], identity: dict[str, Any], run_id: str) -> None:
    for key, value in identity.items():
        theirs = checkpoint.get(key)
        if theirs == value:
            continue
        if isinstance(value, dict) and isinstance(theirs, dict):
            made = ", ".join(f"{k}={theirs.get(k)!r}, not {v!r}" for k, v in value.items() if theirs.get(k) != v)
        else:
            made = f"{key}={theirs!r}, not {value!r}"
        raise CxrtlError(f"run {run_id} was started with {made}; start a new run id instead")
