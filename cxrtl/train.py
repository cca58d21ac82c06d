"""Fine-tune the study's ResNet50 from one weight source, with a checkpoint per epoch and resume."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrtl import __version__
from cxrtl.checkpoints import CheckpointStore, get_payload
from cxrtl.data import SPLITS, PreparedData
from cxrtl.engine import predict, recalibrate_batchnorm, resolve_device, train_one_epoch
from cxrtl.errors import CxrtlError
from cxrtl.files import check_output_folder, staged_folder
from cxrtl.model import NUM_CLASSES, build_model, set_backbone_trainable
from cxrtl.recipes import get_recipe
from cxrtl.store import Store
from cxrtl.weights import get_source, load_backbone_state_dict, resolve_weights

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
METADATA_FILE = "model.json"


@dataclass(frozen=True)
class TrainConfig:
    recipe: str
    epochs: int
    batch_size: int
    learning_rate: float
    freeze_backbone_after: int | None
    normalize: bool
    class_weighted_loss: bool
    recalibrate_bn: bool
    selection_split: str
    seed: int = 0
    device: str = "auto"
    keep_checkpoints: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise CxrtlError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise CxrtlError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.freeze_backbone_after is not None and self.freeze_backbone_after < 0:
            raise CxrtlError(f"freeze_backbone_after must be 0 or more, got {self.freeze_backbone_after}")
        if self.selection_split not in SPLITS:
            raise CxrtlError(f"selection_split must be one of {', '.join(SPLITS)}, got {self.selection_split!r}")

    @classmethod
    def from_recipe(cls, recipe: str, **overrides: Any) -> TrainConfig:
        """The recipe's settings, with ``overrides`` (only the keys given) on top."""
        base = get_recipe(recipe)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {name: getattr(base, name) for name in names if hasattr(base, name)}
        values["recipe"] = base.name
        unknown = set(overrides) - names
        if unknown:
            raise CxrtlError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**{**values, **overrides})

    def backbone_trainable(self, epoch: int) -> bool:
        return self.freeze_backbone_after is None or epoch <= self.freeze_backbone_after


def config_for_data(data_dir: Path, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """The training set-up for a prepared dataset: its own recipe unless ``recipe`` names another."""
    return TrainConfig.from_recipe(recipe or PreparedData.load(data_dir).info.get("recipe", "paper"), **overrides)


@dataclass
class TrainResult:
    model_path: Path
    metadata: dict[str, Any]


def train(
    data_dir: Path,
    source: str,
    out_dir: Path,
    config: TrainConfig,
    store: Store,
    run_id: str,
) -> TrainResult:
    """Train from ``source``'s stored weights on the prepared data; write the best model to ``out_dir``.

    Checkpoints go to ``runs/RUN_ID/SOURCE/`` in ``store`` each epoch; if some exist, training resumes
    from the newest. The best model also goes to ``models/SOURCE/RUN_ID/``.
    """
    get_source(source)  # an unknown name fails before anything is read
    check_output_folder(out_dir, METADATA_FILE)  # before training, not after
    data = PreparedData.load(data_dir)
    train_idx, select_idx = data.indices("train"), data.indices(config.selection_split)
    if len(train_idx) == 0:
        raise CxrtlError(f"{data_dir}: the training split is empty")
    if len(select_idx) == 0:
        raise CxrtlError(
            f"{data_dir}: recipe {config.recipe!r} picks the best epoch on the {config.selection_split!r} split, "
            f"which this dataset does not have; preprocess it with --recipe {config.recipe}"
        )
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)

    with tempfile.TemporaryDirectory(prefix="cxrtl-weights-") as cache:
        weights = resolve_weights(store, source, Path(cache))
        backbone = load_backbone_state_dict(source, weights.path)
    if weights.stand_in:
        logger.warning("%s: training from a STAND-IN checkpoint (random weights), not the published ones", source)
    logger.info("%s: loaded %d backbone tensors from weights sha256 %s", source, len(backbone), weights.sha256)
    model = build_model(backbone).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    class_weights = _class_weights(data.labels[train_idx]) if config.class_weighted_loss else None
    criterion = nn.CrossEntropyLoss(weight=class_weights).to(device)

    checkpoints = CheckpointStore(store, run_id, source, keep=config.keep_checkpoints)
    # What a resumed run must share with its checkpoint; more epochs, another device may differ.
    settings = {
        k: v for k, v in dataclasses.asdict(config).items() if k not in ("epochs", "device", "keep_checkpoints")
    }
    identity = {"source": source, "weights_sha256": weights.sha256, "recipe": config.recipe, "settings": settings}
    history: dict[str, list[float]] = {k: [] for k in ("train_loss", "train_accuracy", "select_accuracy")}
    best = {"epoch": 0, "accuracy": -1.0}
    best_state: dict[str, torch.Tensor] | None = None
    start_epoch = 1
    resumed = checkpoints.latest()
    if resumed is not None:
        _check_resumable(resumed, identity, run_id)
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        history, best = resumed["history"], resumed["best"]
        best_state = _best_state(checkpoints, store, resumed["best"]["epoch"], source, run_id)
        start_epoch = resumed["epoch"] + 1
        logger.info("%s: resuming run %s from the checkpoint of epoch %d", source, run_id, resumed["epoch"])

    for epoch in range(start_epoch, config.epochs + 1):
        # Seeded per epoch, so a resumed run shuffles and drops out exactly as an uninterrupted one would.
        torch.manual_seed(config.seed * 100_003 + epoch)
        rng = np.random.default_rng([config.seed, epoch])
        set_backbone_trainable(model, config.backbone_trainable(epoch))
        label = f"{source} epoch {epoch}/{config.epochs}"
        stats = train_one_epoch(
            model,
            optimizer,
            criterion,
            data.images,
            data.labels,
            train_idx,
            config.batch_size,
            config.normalize,
            device,
            rng,
            label,
        )
        if config.recalibrate_bn:
            recalibrate_batchnorm(model, data.images, train_idx, config.batch_size, config.normalize, device)
        probs = predict(model, data.images, select_idx, config.batch_size, config.normalize, device)
        accuracy = float((probs.argmax(1) == data.labels[select_idx]).mean())
        history["train_loss"].append(stats.loss)
        history["train_accuracy"].append(stats.accuracy)
        history["select_accuracy"].append(accuracy)
        logger.info(
            "%s: train loss %.4f acc %.4f, %s acc %.4f (%.1f img/s)",
            label,
            stats.loss,
            stats.accuracy,
            config.selection_split,
            accuracy,
            stats.images_per_second,
        )
        if accuracy > best["accuracy"]:
            best = {"epoch": epoch, "accuracy": accuracy}
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            checkpoints.save_best(epoch, {**identity, "epoch": epoch, "model": best_state})
        checkpoints.save(
            epoch,
            {
                **identity,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": history,
                "best": best,
                "config": dataclasses.asdict(config),
            },
        )

    metadata = {
        "source": source,
        "source_description": get_source(source).description,
        "weights_sha256": weights.sha256,
        "weights_stand_in": weights.stand_in,
        "backbone_tensors_loaded": len(backbone),
        "run_id": run_id,
        "config": dataclasses.asdict(config),
        "best_epoch": best["epoch"],
        "selection_split": config.selection_split,
        "selection_accuracy": best["accuracy"],
        "history": history,
        "resumed_from_epoch": start_epoch - 1 if resumed is not None else None,
        "dataset": {k: (data.info.get("dataset") or {}).get(k) for k in ("slug", "version", "sha256")},
        "image_size": data.image_size,
        "device": str(device),
        "cxrtl_version": __version__,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    model_path = save_model(out_dir, best_state, metadata)
    store.put_file(f"models/{source}/{run_id}/{MODEL_FILE}", model_path)
    store.put_file(f"models/{source}/{run_id}/{METADATA_FILE}", out_dir / METADATA_FILE)
    checkpoints.drop_best()
    logger.info(
        "%s: best epoch %d (%s accuracy %.4f); model in %s",
        source,
        best["epoch"],
        config.selection_split,
        best["accuracy"],
        out_dir,
    )
    return TrainResult(model_path, metadata)


def save_model(out_dir: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    with staged_folder(out_dir, marker=METADATA_FILE) as staged:
        torch.save({"state_dict": state_dict, "metadata": metadata}, staged / MODEL_FILE)
        (staged / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return out_dir / MODEL_FILE


def load_model(model_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
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
    return model.eval(), saved["metadata"]


def _best_state(
    checkpoints: CheckpointStore, store: Store, epoch: int, source: str, run_id: str
) -> dict[str, torch.Tensor]:
    saved = checkpoints.best(epoch)
    if saved is not None:
        return saved["model"]
    # A finished run dropped its best-so-far copy: the final model is that same state.
    return get_payload(store, f"models/{source}/{run_id}/{MODEL_FILE}")["state_dict"]


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
        raise CxrtlError(f"run {run_id}: its checkpoint was made with {made}; start a new run id instead")
