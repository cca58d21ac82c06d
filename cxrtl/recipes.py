"""Training recipes: the study's own set-up, and the one we recommend for new work."""

from __future__ import annotations

from dataclasses import dataclass

from cxrtl.errors import CxrtlError


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    balance_classes: bool  # subsample Normal to the COVID count, as the study did
    split_fractions: tuple[float, float, float]  # train, validation, test
    normalize: bool  # ImageNet mean/std on the input
    epochs: int
    batch_size: int
    learning_rate: float  # Adam
    class_weighted_loss: bool
    # Epochs of full fine-tuning before the backbone is frozen; None trains everything throughout.
    freeze_backbone_after: int | None
    selection_split: str  # the split whose accuracy picks the best epoch
    # Recompute BatchNorm running statistics over the training split before each evaluation ("precise BN").
    # Exponential running averages lag behind weights that move fast; the study did not do this.
    recalibrate_bn: bool


PAPER = Recipe(
    name="paper",
    description=(
        "Hossain et al. 2022 as run: balanced COVID/Normal, 80/20 train/test, no normalisation, "
        "Adam lr 1e-3, batch 32, 50 epochs, backbone frozen after epoch 1, "
        "best epoch chosen on the test split"
    ),
    balance_classes=True,
    split_fractions=(0.8, 0.0, 0.2),
    normalize=False,
    epochs=50,
    batch_size=32,
    learning_rate=1e-3,
    class_weighted_loss=False,
    freeze_backbone_after=1,
    selection_split="test",
    recalibrate_bn=False,
)

RECOMMENDED = Recipe(
    name="recommended",
    description=(
        "all COVID and Normal images, stratified 70/10/20 train/validation/test, ImageNet normalisation, "
        "class-weighted loss, Adam lr 1e-4, batch 32, 20 epochs of full fine-tuning, "
        "BatchNorm statistics recomputed before each evaluation, best epoch chosen on validation"
    ),
    balance_classes=False,
    split_fractions=(0.7, 0.1, 0.2),
    normalize=True,
    epochs=20,
    batch_size=32,
    learning_rate=1e-4,
    class_weighted_loss=True,
    freeze_backbone_after=None,
    selection_split="val",
    recalibrate_bn=True,
)

RECIPES = {r.name: r for r in (PAPER, RECOMMENDED)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise CxrtlError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
