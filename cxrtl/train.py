"""Fine-tune the study's ResNet50 from one weight source, with checkpoints (by time, at the end, on SIGTERM)
and resume.

:func:`train` strings together pieces that each work alone on a :class:`Session` (one source's
training in one run): :func:`open_session` (the data, and the source's weights in the network),
:func:`resume` (where the run stopped, from its newest checkpoint), :func:`run_epoch`, :func:`record_epoch`
(its history and best model), :func:`checkpoint` (when due: ``config.checkpoint_minutes``) and :func:`finish`
(the best model saved and published with its metadata).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import log_loss
from torch import nn

from cxrtl import __version__, running_image, signals
from cxrtl.checkpoints import CheckpointPolicy, CheckpointStore
from cxrtl.data import POSITIVE_LABEL, PreparedData
from cxrtl.device import DeviceInfo, require_compiler
from cxrtl.engine import (
    Batches,
    EpochStats,
    StepSettings,
    Tally,
    predict,
    recalibrate_batchnorm,
    resolve_device,
    resolve_precision,
    train_one_epoch,
)
from cxrtl.errors import CxrtlError
from cxrtl.files import check_output_folder, staged_folder, writing
from cxrtl.metrics import selection_score, youden_threshold
from cxrtl.model import NUM_CLASSES, build_model, set_backbone_trainable
from cxrtl.recipes import TrainConfig
from cxrtl.records import DatasetRef, ModelMetadata
from cxrtl.seen import SEEN_FILE, Seen
from cxrtl.store import Store, keys, sha256_file
from cxrtl.weights import StoredWeights, get_source, load_backbone_state_dict, resolve_weights

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
METADATA_FILE = "model.json"
_HISTORY = ("train_loss", "train_accuracy", "select_loss", "select_accuracy", "select_score")
# What a resumed run may change: more epochs, another device, the checkpoint policy, and the switches of
# speed that leave results alone (precision does not: bf16 and fp16 change them beyond noise).
_RESUMABLE_CHANGES = (
    "epochs",
    "device",
    "keep_checkpoints",
    "checkpoint_minutes",
    "channels_last",
    "cudnn_benchmark",
    "compile",
    "data_on_device",
)


def config_for_data(data_dir: Path, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """The training set-up for a prepared dataset: its own recipe unless ``recipe`` names another."""
    return TrainConfig.from_recipe(recipe or PreparedData.load(data_dir).info.recipe, **overrides)


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
    net: nn.Module  # what runs the model: the model itself, or torch.compile's wrapper of it
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # fp16 only
    criterion: nn.Module
    train: Batches
    select: Batches  # the split whose selection metric picks the best epoch
    checkpoints: CheckpointStore
    step_settings: StepSettings

    @property
    def identity(self) -> dict[str, Any]:
        return self.checkpoints.identity


def training_identity(source: str, config: TrainConfig, data: PreparedData, weights_sha256: str) -> dict[str, Any]:
    """What a training is, and so what a checkpoint of it holds and a resumed run must share with it: the
    source and its weight file, the recipe and every setting that changes results (the seed included; not
    those in ``_RESUMABLE_CHANGES``), the dataset (ingest's version and sha256), the image size, the prepared
    images themselves (their pixel hashes, labels and split, which also pin the recipe's split), and cxrtl's
    version (a release may change what a training computes; an unreleased edit of the code does not count).
    Its hash (:func:`cxrtl.checkpoints.training_id`) is the training's key in the store."""
    settings = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE_CHANGES}
    return {
        "source": source,
        "weights_sha256": weights_sha256,
        "recipe": config.recipe,
        "settings": settings,
        "dataset": dataclasses.asdict(DatasetRef.of(data.info.dataset)),
        "image_size": data.image_size,
        "images_sha256": _images_digest(data),
        "cxrtl_version": __version__,
    }


def _images_digest(data: PreparedData) -> str:
    """SHA-256 of which images are in which split with which label: their pixel hashes where the prepared
    data has them (their ids otherwise), the labels and the split."""
    digest = hashlib.sha256()
    digest.update(json.dumps(data.hashes if data.hashes is not None else data.ids).encode())
    digest.update(np.ascontiguousarray(data.labels, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(data.split, dtype=np.uint8).tobytes())
    return digest.hexdigest()


@dataclass
class Progress:
    """How far a run got: the epochs done, their history and the best of them."""

    epoch: int = 0  # the last epoch done
    history: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in _HISTORY})
    best_epoch: int = 0
    best_score: float = -1.0  # of the recipe's selection metric
    best_state: dict[str, torch.Tensor] | None = None
    best_saved: int = 0  # the epoch whose best model is in the store
    resumed_from: int | None = None  # the epoch of the checkpoint this process started from
    partial: Partial | None = None  # the epoch after ``epoch``, as far as a SIGTERM let it run

    @property
    def best(self) -> dict[str, Any]:
        return {"epoch": self.best_epoch, "score": self.best_score}


@dataclass
class Partial:
    """An epoch stopped after some steps: where it stopped, what it summed, and the random state there."""

    tally: Tally
    rng: dict[str, torch.Tensor]  # torch's generator states (cpu, cuda): dropout draws from them

    @classmethod
    def now(cls, tally: Tally) -> Partial:
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        return cls(tally, rng)

    def restore_rng(self) -> None:
        torch.set_rng_state(self.rng["cpu"])
        if "cuda" in self.rng:
            torch.cuda.set_rng_state(self.rng["cuda"])

    def to_dict(self) -> dict[str, Any]:
        return {"tally": dataclasses.asdict(self.tally), "rng": self.rng}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Partial:
        return cls(Tally(**data["tally"]), data["rng"])


@dataclass
class EpochResult:
    stats: EpochStats
    select_accuracy: float
    select_score: float  # the recipe's selection metric on the selection split
    select_loss: float  # unweighted cross-entropy on the selection split


def open_session(data_dir: Path, source: str, config: TrainConfig, store: Store, run_id: str) -> Session:
    """Check the data against the recipe, then build the network from ``source``'s stored weights."""
    get_source(source)  # an unknown name fails before anything is read
    device = resolve_device(config.device)  # a missing GPU too
    if config.compile:
        require_compiler(device)
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
    step_settings = StepSettings(resolve_precision(config.precision, device), config.channels_last)
    torch.backends.cudnn.benchmark = config.cudnn_benchmark
    torch.manual_seed(config.seed)  # before the network is built: it draws the head's initial weights

    with tempfile.TemporaryDirectory(prefix="cxrtl-weights-") as cache:
        weights = resolve_weights(store, source, Path(cache))
        backbone = load_backbone_state_dict(source, weights.path)
    if weights.stand_in:
        logger.warning("%s: training from a STAND-IN checkpoint (random weights), not the published ones", source)
    logger.info("%s: loaded %d backbone tensors from weights sha256 %s", source, len(backbone), weights.sha256)
    model = step_settings.prepare(build_model(backbone).to(device))
    # One copy of the images serves both splits (the whole array, on the GPU when it fits).
    train_batches = Batches.of(data, "train", training.batch_size, training.normalize, device)
    if config.data_on_device:
        train_batches = train_batches.on_device()
    select_batches = dataclasses.replace(train_batches, indices=data.indices(training.selection_split))
    class_weights = _class_weights(data.labels[train_batches.indices]) if training.class_weighted_loss else None
    return Session(
        source=source,
        run_id=run_id,
        config=config,
        data=data,
        weights=weights,
        backbone_tensors=len(backbone),
        model=model,
        net=torch.compile(model) if config.compile else model,
        optimizer=torch.optim.Adam(model.parameters(), lr=training.learning_rate),
        scaler=torch.amp.GradScaler(device.type) if step_settings.precision == "fp16" else None,
        criterion=nn.CrossEntropyLoss(weight=class_weights).to(device),
        train=train_batches,
        select=select_batches,
        checkpoints=CheckpointStore(
            store, run_id, source, training_identity(source, config, data, weights.sha256), keep=config.keep_checkpoints
        ),
        step_settings=step_settings,
    )


def resume(session: Session, fresh: bool = False) -> Progress:
    """Where the training stands, loaded into the session: from its newest checkpoint, whichever run wrote
    it; the finished training's model when a run with the same identity and epochs published one; else a
    fresh start. ``fresh``: start afresh what another run left (a retry of this run still resumes its own)."""
    checkpoints = session.checkpoints
    # Claimed before the first epoch: a second run of this id with other settings is refused here.
    _check_resumable(checkpoints.claim(), session.identity, session.run_id)
    if fresh and checkpoints.previous_owner not in (None, session.run_id):
        logger.info("%s: training afresh, as asked, what run %s left", session.source, checkpoints.previous_owner)
        checkpoints.reset()
    epochs = session.config.training.epochs
    # A resumed model would be of more epochs than its model.json says; a finished run (its checkpoints
    # deleted) would be replaced in the store by a shorter one under the same run id.
    finished = _finished_epochs(session)
    _check_stored_model(session)
    if finished > epochs:
        raise CxrtlError(
            f"run {session.run_id}: {session.source} has trained {finished} epochs already, more than "
            f"epochs={epochs}; give at least {finished} or start a new run id"
        )
    saved, done = checkpoints.latest(), checkpoints.done()
    if saved is not None:
        _check_resumable(saved, session.identity, session.run_id)
        if saved["epoch"] <= epochs:
            progress = _progress_of(session, saved, done)
            if progress is not None:
                return progress
    elif done is not None and done["epochs"] == epochs:
        progress = _progress_of(session, {**done, "epoch": epochs, "partial": None}, done)
        if progress is not None:
            return progress
    if saved is not None or done is not None:
        logger.warning(
            "%s: the training with these data, weights and settings (%s) has %s; starting it afresh",
            session.source,
            keys.training_prefix(session.source, checkpoints.training),
            f"a checkpoint of epoch {saved['epoch']}, more than epochs={epochs}"
            if saved is not None and saved["epoch"] > epochs
            else "no usable checkpoint or model for this run's epochs",
        )
        checkpoints.reset()
    return Progress()


def _progress_of(session: Session, saved: dict[str, Any], done: dict[str, Any] | None) -> Progress | None:
    """The progress ``saved`` (a checkpoint, or a finished training's record) holds, loaded into the session;
    None when its best model is gone (pruned)."""
    best = saved["best"]
    best_state = None
    if best["epoch"]:  # 0: none yet
        best_state = _best_state(session.checkpoints, best["epoch"], done)
        if best_state is None:
            return None
    partial = Partial.from_dict(saved["partial"]) if saved.get("partial") else None
    where = f"epoch {saved['epoch']}" + (f" and {partial.tally.steps} steps of the next" if partial else "")
    if "model" in saved:  # a checkpoint: training goes on from it
        session.model.load_state_dict(saved["model"])
        session.optimizer.load_state_dict(saved["optimizer"])
        if session.scaler is not None and saved.get("scaler"):
            session.scaler.load_state_dict(saved["scaler"])
        _warn_of_missing_moments(session, saved, where)
    writer = done["run_id"] if done is not None and "model" not in saved else None
    if writer is not None:
        logger.info(
            "%s: run %s finished the training with these data, weights and settings; its model is this run's, "
            "not trained again",
            session.source,
            writer,
        )
    else:
        logger.info("%s: resuming run %s from the checkpoint of %s", session.source, session.run_id, where)
    return Progress(
        epoch=saved["epoch"],
        history=saved["history"],
        best_epoch=best["epoch"],
        best_score=best["score"],
        best_state=best_state,
        best_saved=best["epoch"],
        resumed_from=saved["epoch"],
        partial=partial,
    )


def _warn_of_missing_moments(session: Session, saved: dict[str, Any], where: str) -> None:
    """Say so when a checkpoint lacks the optimizer state of parameters that train on: earlier builds of
    cxrtl 0.1.0 left the backbone's out of a checkpoint taken inside its last trainable epoch. Adam starts
    them afresh: a sound training, but not the one an uninterrupted run does."""
    if not session.config.training.backbone_trainable(saved["epoch"] + 1):
        return
    optimizer = saved["optimizer"]
    missing = sum(len(group["params"]) for group in optimizer["param_groups"]) - len(optimizer["state"])
    if missing:
        logger.warning(
            "%s: the checkpoint of %s lacks the optimizer state of %d parameters that still train (an older "
            "cxrtl left it out); Adam starts theirs afresh, so this run will not match an uninterrupted one",
            session.source,
            where,
            missing,
        )


def _check_stored_model(session: Session) -> None:
    """Refuse, before training, a run id whose stored model for the source came from anything else: training
    on would silently replace that run's model (and its seen.json) with one of another dataset or recipe."""
    store, key = session.checkpoints.store, keys.model_key(session.source, session.run_id, METADATA_FILE)
    if not store.exists(key):
        return
    stored = ModelMetadata.from_dict(store.get_json(key), key)
    theirs, ours = _model_identity(stored), _model_identity(session)
    for name, value in ours.items():
        if theirs[name] != value:
            raise CxrtlError(
                f"run {session.run_id}: {session.source}'s stored model ({key}) was trained with {name} "
                f"{theirs[name]!r}, not {value!r}; start a new run id to train on this"
            )


def _model_identity(of: ModelMetadata | Session) -> dict[str, Any]:
    """What a run id's stored model must share with a training that would replace it."""
    if isinstance(of, Session):
        dataset, image_size, config = DatasetRef.of(of.data.info.dataset), of.data.image_size, of.config
        weights, version = of.weights.sha256, __version__
    else:
        dataset, image_size, config, weights, version = (
            of.dataset,
            of.image_size,
            of.config,
            of.weights_sha256,
            of.cxrtl_version,
        )
    settings = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE_CHANGES}
    return {
        "dataset version": dataset.version,
        "dataset sha256": dataset.sha256,
        "image size": image_size,
        "recipe": config.recipe,
        **settings,
        "weights sha256": weights,
        "cxrtl version": version,
    }


def _finished_epochs(session: Session) -> int:
    """The epochs of the model this run id has already stored for the source; 0 if none."""
    store, key = session.checkpoints.store, keys.model_key(session.source, session.run_id, METADATA_FILE)
    if not store.exists(key):
        return 0
    return ModelMetadata.from_dict(store.get_json(key), key).config.training.epochs


def run_epoch(
    session: Session, epoch: int, partial: Partial | None = None, stop: threading.Event | None = None
) -> EpochResult:
    """Train one epoch (the rest of it after ``partial``), then measure accuracy and the selection metric
    on the selection split.

    Once ``stop`` is set, the epoch ends after the step under way: the result's stats say ``stopped``, and
    its selection measures are NaN."""
    config, training = session.config, session.config.training
    # Seeded per epoch, so a resumed run shuffles and drops out exactly as an uninterrupted one would.
    torch.manual_seed(config.seed * 100_003 + epoch)
    rng = np.random.default_rng([config.seed, epoch])
    if partial is not None:
        partial.restore_rng()
    set_backbone_trainable(session.model, training.backbone_trainable(epoch))
    log_prefix = f"{session.source} epoch {epoch}/{training.epochs}"
    stats = train_one_epoch(
        session.net,
        session.train.shuffled(rng),
        optimizer=session.optimizer,
        criterion=session.criterion,
        log_prefix=log_prefix,
        step_settings=session.step_settings,
        scaler=session.scaler,
        start=partial.tally if partial else None,
        stop=stop,
    )
    if stats.stopped:
        return EpochResult(stats, select_accuracy=math.nan, select_score=math.nan, select_loss=math.nan)
    if training.recalibrate_bn:
        recalibrate_batchnorm(session.net, session.train)
    probs = predict(session.net, session.select, session.step_settings)
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
    loss = float(log_loss(labels, probs, labels=range(NUM_CLASSES)))
    return EpochResult(stats, select_accuracy=accuracy, select_score=score, select_loss=loss)


def record_epoch(session: Session, progress: Progress, epoch: int, result: EpochResult) -> None:
    """Add the epoch to ``progress``: its history, and the best model when it is one."""
    progress.epoch = epoch
    progress.partial = None
    values = (result.stats.loss, result.stats.accuracy, result.select_loss, result.select_accuracy, result.select_score)
    for name, value in zip(_HISTORY, values, strict=True):
        progress.history[name].append(value)
    # Better: a higher selection score; at an equal one (ROC AUC is often 1.0 on a small validation split),
    # a higher selection-split accuracy; then the earlier epoch.
    best_accuracy = progress.history["select_accuracy"][progress.best_epoch - 1] if progress.best_epoch else -1.0
    if (result.select_score, result.select_accuracy) > (progress.best_score, best_accuracy):
        progress.best_epoch, progress.best_score = epoch, result.select_score
        progress.best_state = {k: v.detach().cpu().clone() for k, v in session.model.state_dict().items()}


def checkpoint(session: Session, progress: Progress) -> None:
    """Checkpoint ``progress`` (with its partial epoch, if any), and the best model first if not yet saved."""
    epoch = progress.epoch + (1 if progress.partial else 0)
    best = None
    if progress.best_saved != progress.best_epoch:
        best = {**session.identity, "epoch": progress.best_epoch, "model": progress.best_state}
        progress.best_saved = progress.best_epoch
    payload = {
        **session.identity,
        "epoch": progress.epoch,
        "partial": progress.partial.to_dict() if progress.partial else None,
        "model": session.model.state_dict(),
        "optimizer": _optimizer_state(session, next_epoch=progress.epoch + 1),
        "scaler": session.scaler.state_dict() if session.scaler is not None else None,
        "history": progress.history,
        "best": progress.best,
        "config": session.config.to_dict(),
    }
    session.checkpoints.save(epoch, payload, best)


def _optimizer_state(session: Session, next_epoch: int) -> dict[str, Any]:
    """The optimizer's state, less that of parameters frozen from ``next_epoch`` (the one a resumed run trains
    first, or the rest of) to the end of the run.

    Adam leaves the state of a parameter without a gradient alone and never reads it, and a frozen backbone
    is never unfrozen (``freeze_backbone_after`` is part of the run's identity): so a checkpoint after the
    freeze need not carry the backbone's two moments, two thirds of its size, and a resumed run is still
    exact. The state of the parameters that train (the head) stays."""
    state = session.optimizer.state_dict()
    if session.config.training.backbone_trainable(next_epoch):
        return state
    names = [name for name, _ in session.model.named_parameters()]
    kept = {i: s for i, s in state["state"].items() if names[i].startswith("fc.")}
    return {**state, "state": kept}


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
        dataset=DatasetRef.of(session.data.info.dataset),
        image_size=session.data.image_size,
        device=str(session.train.device),
        **dataclasses.asdict(DeviceInfo.of(session.train.device)),
        image=running_image(),
        precision=session.step_settings.precision,
        cxrtl_version=__version__,
        trained_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    seen = Seen.of(session.data, config.training.selection_split)
    model_path = save_model(out_dir, progress.best_state, metadata, seen)
    store = session.checkpoints.store
    for name in (MODEL_FILE, METADATA_FILE, *([SEEN_FILE] if seen else [])):
        # Linked where the store can: the output folder's files (KFP's model artifact) are never changed in place.
        store.put_file(keys.model_key(source, session.run_id, name), out_dir / name, link=True)
    session.checkpoints.finish(
        {
            "run_id": session.run_id,
            "epochs": config.training.epochs,
            "history": progress.history,
            "best": progress.best,
            "model_key": keys.model_key(source, session.run_id, MODEL_FILE),
            "model_sha256": sha256_file(model_path),
        }
    )
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
    fresh: bool = False,
) -> TrainResult:
    """Train from ``source``'s stored weights on the prepared data; write the best model to ``out_dir``.

    Checkpoints go to the store as ``config.checkpoint_minutes`` says, written while training goes on; if the
    run has some, training resumes from the newest. On SIGTERM or SIGINT (Ctrl-C) the step under way finishes, a
    checkpoint is written and :class:`cxrtl.signals.Terminated` raised. The best model goes to the store too (keys in
    :mod:`cxrtl.store.keys`); the checkpoints, but ``config.keep_checkpoints`` of them, are then deleted.
    Checkpoints are the training's, not the run's: another run with the same identity resumes them, or takes
    the model once the training is done, unless ``fresh`` (a forced run) asks to train again.
    """
    problem = keys.run_id_problem(run_id)
    if problem:
        raise CxrtlError(f"run id {problem}")
    check_output_folder(out_dir, METADATA_FILE)  # before training, not after
    session = open_session(data_dir, source, config, store, run_id)
    progress = resume(session, fresh)
    policy = CheckpointPolicy(config.checkpoint_minutes)
    epochs = config.training.epochs
    with signals.deferred() as stop, session.checkpoints.in_background():
        for epoch in range(progress.epoch + 1, epochs + 1):
            result = run_epoch(session, epoch, progress.partial, stop)
            if result.stats.stopped:
                progress.partial = Partial.now(result.stats.tally)
                checkpoint(session, progress)
                break
            record_epoch(session, progress, epoch, result)
            if stop.is_set() or policy.due(last_epoch=epoch == epochs):
                checkpoint(session, progress)
                policy.saved()
            if stop.is_set():
                break
    if stop.is_set() and (progress.partial or progress.epoch < epochs):
        raise signals.Terminated(
            f"{source}: stopped by {stop.signal_name} after epoch {progress.epoch}, checkpoint saved",
            signal_name=stop.signal_name,
        )
    return finish(session, progress, out_dir)


def save_model(
    out_dir: Path, state_dict: dict[str, torch.Tensor], metadata: ModelMetadata, seen: Seen | None = None
) -> Path:
    record = metadata.to_dict()
    with staged_folder(out_dir, marker=METADATA_FILE) as staged, writing("the model", out_dir):
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
    return youden_threshold(labels, predict(session.net, session.select, session.step_settings)[:, POSITIVE_LABEL])


def _best_state(
    checkpoints: CheckpointStore, epoch: int, done: dict[str, Any] | None
) -> dict[str, torch.Tensor] | None:
    """The best model of ``epoch``: its copy beside the checkpoints, else (a finished training dropped that
    copy) the model the training published, if it is still there unchanged; else None."""
    saved = checkpoints.best(epoch)
    if saved is not None:
        return saved["model"]
    if done is None or done["best"]["epoch"] != epoch:
        return None
    store, key = checkpoints.store, done["model_key"]
    with tempfile.TemporaryDirectory(prefix="cxrtl-model-") as tmp:
        path = Path(tmp) / MODEL_FILE
        if not store.exists(key):
            logger.warning("%s: %s, the model of a finished training, is gone", checkpoints.source, key)
            return None
        if store.get_file(key, path) != done["model_sha256"]:
            logger.warning("%s: %s is not the model its training published (sha256 differs)", checkpoints.source, key)
            return None
        return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _class_weights(labels: np.ndarray) -> torch.Tensor:
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    return torch.tensor(len(labels) / (NUM_CLASSES * np.maximum(counts, 1)), dtype=torch.float32)


def _check_resumable(checkpoint: dict[str, Any], identity: dict[str, Any], run_id: str) -> None:
    for key, value in identity.items():
        theirs = checkpoint.get(key)
        if theirs == value:
            continue
        if isinstance(value, dict) and isinstance(theirs, dict):
            # The settings by their names (as the options say them), the dataset's fields as dataset.FIELD.
            prefix = "" if key == "settings" else f"{key}."
            made = ", ".join(
                f"{prefix}{k}={theirs.get(k)!r}, not {v!r}" for k, v in value.items() if theirs.get(k) != v
            )
        else:
            made = f"{key}={theirs!r}, not {value!r}"
        raise CxrtlError(f"run {run_id} was started with {made}; start a new run id instead")
