"""Training recipes (the study's own set-up, and the one we recommend for new work), and a run's training
configuration: a recipe with the run's overrides applied."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from cxrtl.data import SPLITS
from cxrtl.errors import CxrtlError

SELECTION_METRICS = ("accuracy", "roc_auc")

# Adam steps of more than 1 in a weight that starts near 0.01 diverge at once (the loss goes to NaN).
MAX_LEARNING_RATE = 1.0


def learning_rate_problem(value: float) -> str | None:
    """What is wrong with ``value`` as a learning rate (NaN and infinity included), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if not 0 < value <= MAX_LEARNING_RATE:
        return f"must be in (0, {MAX_LEARNING_RATE:g}], got {value!r}"
    return None


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


# BatchNorm normalises each channel over a batch's images and positions; at 32 px ResNet50's last feature map is
# 1x1, so a batch of one image has a single value per channel and cannot be trained on. (A last batch of one is
# merged into the batch before it: cxrtl.engine.Batches.)
MIN_BATCH_SIZE = 2


def batch_size_problem(value: int) -> str | None:
    """What is wrong with ``value`` as a training batch size, or None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_BATCH_SIZE:
        return f"must be a whole number of at least {MIN_BATCH_SIZE} (BatchNorm normalises over a batch), got {value!r}"
    return None


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or value < 1:
        raise CxrtlError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Training:
    """How a recipe trains: the settings a run may override (``cxrtl train`` options, pipeline parameters)."""

    epochs: int
    batch_size: int
    learning_rate: float  # Adam
    normalize: bool  # ImageNet mean/std on the input
    class_weighted_loss: bool
    # Epochs of full fine-tuning before the backbone is frozen; None trains everything throughout.
    freeze_backbone_after: int | None
    selection_split: str  # the split whose selection_metric picks the best epoch
    # "accuracy" (the study's rule) or "roc_auc": threshold-free, so unmoved by class imbalance (ties broken by
    # accuracy on the same split, then the earlier epoch). With a validation split, the decision threshold is
    # chosen there too (Youden's J) and applied unchanged to the test split.
    selection_metric: str
    # Recompute BatchNorm running statistics over the training split before each evaluation ("precise BN").
    # Exponential running averages lag behind weights that move fast; the study did not do this.
    recalibrate_bn: bool

    def __post_init__(self) -> None:
        _check_positive_int("epochs", self.epochs)
        problem = batch_size_problem(self.batch_size)
        if problem:
            raise CxrtlError(f"batch_size {problem}")
        problem = learning_rate_problem(self.learning_rate)
        if problem:
            raise CxrtlError(f"learning_rate {problem}")
        if self.freeze_backbone_after is not None and self.freeze_backbone_after < 0:
            raise CxrtlError(f"freeze_backbone_after must be 0 or more, got {self.freeze_backbone_after}")
        if self.selection_split not in SPLITS:
            raise CxrtlError(f"selection_split must be one of {', '.join(SPLITS)}, got {self.selection_split!r}")
        if self.selection_metric not in SELECTION_METRICS:
            raise CxrtlError(
                f"selection_metric must be one of {', '.join(SELECTION_METRICS)}, got {self.selection_metric!r}"
            )

    def backbone_trainable(self, epoch: int) -> bool:
        return self.freeze_backbone_after is None or epoch <= self.freeze_backbone_after


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    balance_classes: bool  # subsample Normal to the COVID count, as the study did
    split_fractions: tuple[float, float, float]  # train, validation, test
    # True: each image's split follows from its pixels (cxrtl.duplicates.stable_split), whatever the seed or
    # the dataset version; False: a seeded stratified split. Duplicates share a split either way.
    stable_split: bool
    training: Training


PAPER = Recipe(
    name="paper",
    description=(
        "Hossain et al. 2022 as run: balanced COVID/Normal, seeded stratified 80/20 train/test "
        "(duplicates kept together, which the study did not do), no normalisation, "
        "Adam lr 1e-3, batch 32, 50 epochs, backbone frozen after epoch 1, "
        "best epoch chosen on the test split by accuracy"
    ),
    balance_classes=True,
    split_fractions=(0.8, 0.0, 0.2),
    stable_split=False,
    training=Training(
        epochs=50,
        batch_size=32,
        learning_rate=1e-3,
        normalize=False,
        class_weighted_loss=False,
        freeze_backbone_after=1,
        selection_split="test",
        selection_metric="accuracy",
        recalibrate_bn=False,
    ),
)

RECOMMENDED = Recipe(
    name="recommended",
    description=(
        "all COVID and Normal images, 70/10/20 train/validation/test assigned from each image's pixels "
        "(the same split for every seed and dataset version, duplicates kept together), ImageNet normalisation, "
        "class-weighted loss, Adam lr 1e-4, batch 32, 20 epochs of full fine-tuning, "
        "BatchNorm statistics recomputed before each evaluation, best epoch chosen on validation ROC AUC, "
        "decision threshold chosen on validation (Youden's J)"
    ),
    balance_classes=False,
    split_fractions=(0.7, 0.1, 0.2),
    stable_split=True,
    training=Training(
        epochs=20,
        batch_size=32,
        learning_rate=1e-4,
        normalize=True,
        class_weighted_loss=True,
        freeze_backbone_after=None,
        selection_split="val",
        selection_metric="roc_auc",
        recalibrate_bn=True,
    ),
)

RECIPES = {r.name: r for r in (PAPER, RECOMMENDED)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise CxrtlError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None


@dataclass(frozen=True)
class TrainConfig:
    """What one training run does: its recipe's training, with the run's overrides, and how the run is kept."""

    recipe: str
    training: Training
    seed: int = 0
    device: str = "auto"
    # How a step runs (cxrtl.engine.StepSettings): speed, not results beyond floating-point noise.
    precision: str = "auto"  # auto: bf16 on a GPU that has it, else fp16 with a grad scaler; fp32 on the CPU
    channels_last: bool = True
    cudnn_benchmark: bool = True
    # Off: on a GPU its compile time (minutes for ResNet50) has not been measured against its gain.
    compile: bool = False
    data_on_device: bool = True  # a GPU-resident copy of the images when they fit, else pinned host memory
    # At most one checkpoint per this many minutes (0: every epoch), plus the last epoch's and one on SIGTERM.
    checkpoint_minutes: float = 10.0
    keep_checkpoints: int = 0  # checkpoints left in the store once the run is done

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise CxrtlError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not (isinstance(self.keep_checkpoints, int) and self.keep_checkpoints >= 0):
            raise CxrtlError(f"keep_checkpoints must be 0 or more, got {self.keep_checkpoints!r}")
        if not 0 <= self.checkpoint_minutes < float("inf"):
            raise CxrtlError(f"checkpoint_minutes must be 0 or more, got {self.checkpoint_minutes!r}")

    @classmethod
    def from_recipe(cls, recipe: str, **overrides: Any) -> TrainConfig:
        """``recipe``'s training with ``overrides`` (only the keys given) on top; run options may be given too."""
        base = get_recipe(recipe)
        training = {f.name for f in dataclasses.fields(Training)}
        run = {f.name for f in dataclasses.fields(cls)} - {"recipe", "training"}
        unknown = set(overrides) - training - run
        if unknown:
            raise CxrtlError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(
            recipe=base.name,
            training=dataclasses.replace(base.training, **{k: v for k, v in overrides.items() if k in training}),
            **{k: v for k, v in overrides.items() if k in run},
        )

    def to_dict(self) -> dict[str, Any]:
        """One flat dict, as model.json and the checkpoints have always held it."""
        run = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "training"}
        return {**run, **dataclasses.asdict(self.training)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], legacy: dict[str, Any] | None = None) -> TrainConfig:
        """The inverse of :meth:`to_dict`: every field there (KeyError otherwise), and no other.

        ``legacy``: values for the fields that records of an earlier schema lack."""
        data = {**(legacy or {}), **data}
        training = {f.name: data[f.name] for f in dataclasses.fields(Training)}
        run = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name != "training"}
        unknown = sorted(set(data) - set(training) - set(run))
        if unknown:
            raise ValueError(f"unknown training setting(s) {', '.join(unknown)}")
        return cls(training=Training(**training), **run)
