"""A pipeline run's settings, each defined once: type, default, demo value, range check and help text.

``pipeline.py run``'s options, the pipeline's parameters, the check in check-changes and the train and
promote steps all derive from :class:`RunSettings`. A new setting is a field here plus the code that uses it.

"Use the recipe's value" is ``None`` here. A Kubeflow pipeline parameter cannot carry it (KFP 2.17 compiles
``Optional[int] = None``, but kfp.local refuses a ``None`` argument and a parameter left out alike), so on the
pipeline's side it is :data:`RECIPE_VALUE`, turned back into ``None`` by :meth:`RunSettings.from_pipeline`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cxrtl.data import image_size_problem
from cxrtl.errors import CxrtlError
from cxrtl.metrics import HIGHER_IS_BETTER
from cxrtl.recipes import PRECISIONS, RECIPES, TrainConfig, batch_size_problem, learning_rate_problem
from cxrtl.weights.registry import SOURCE_NAMES, check_sources

RECIPE_VALUE = 0  # a pipeline parameter's spelling of None: the recipe's value

# What is wrong with a value, or None when nothing is; the caller names the setting.
Check = Callable[[Any], "str | None"]


def _positive(value: int) -> str | None:
    return None if value > 0 else f"must be positive, got {value}"


def _non_negative(value: int) -> str | None:
    return None if value >= 0 else f"must be 0 or more, got {value}"


# Training seeds run from seed to seed + repeats - 1. They seed torch, NumPy and Python's random, and travel as
# pipeline parameters (JSON numbers, exact to 2**53); below 2**31 they fit every one of them.
MAX_SEED = 2**31 - 1
# Each repeat trains every source once more (ten sources: ten more trainings); 20 seeds already show the spread
# between seeds that a ranking of sources needs, and more is hours of compute for a narrower error bar.
MAX_REPEATS = 20


def _seed(value: int) -> str | None:
    return None if 0 <= value <= MAX_SEED else f"must be in 0..{MAX_SEED}, got {value}"


def _repeats(value: int) -> str | None:
    if 1 <= value <= MAX_REPEATS:
        return None
    return f"must be in 1..{MAX_REPEATS} (each repeat trains every source once more), got {value}"


def _minutes(value: float) -> str | None:
    # NaN fails the comparison, infinity too.
    return None if 0 <= value < float("inf") else f"must be 0 or more minutes, got {value}"


def _fraction(value: float) -> str | None:
    # NaN fails both comparisons, infinity the second.
    return None if 0 <= value < 1 else f"must be in [0, 1), got {value}"


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def _known_sources(value: list[str]) -> None:
    check_sources(value)  # its errors name the sources at fault, which is what a person needs to read


def _about(
    help: str,
    *,
    demo: Any = dataclasses.MISSING,
    check: Check | None = None,
    choices: tuple[str, ...] = (),
    option: str | None = None,
    bare: Any = None,
    fingerprint: bool = False,
) -> dict[str, Any]:
    """A setting's metadata. ``demo``: its value with ``--demo`` (default: its default); ``option``: its
    command-line option (default: --NAME); ``bare``: the value of the option given without one (default: the
    option needs a value); ``fingerprint``: whether a change of it retrains."""
    return {
        "help": help,
        "demo": demo,
        "check": check or (_one_of(choices) if choices else None),
        "choices": choices,
        "option": option,
        "bare": bare,
        "fingerprint": fingerprint,
    }


@dataclass(frozen=True)
class RunSettings:
    """Every setting of a pipeline run; checked when made, each error naming the setting."""

    sources: list[str] = field(
        default_factory=lambda: list(SOURCE_NAMES),
        metadata=_about("comma-separated weight sources (default: all ten)", check=_known_sources, fingerprint=True),
    )
    recipe: str = field(
        default="paper",
        metadata=_about(
            "default: paper; recommended with --demo",
            demo="recommended",
            choices=tuple(sorted(RECIPES)),
            fingerprint=True,
        ),
    )
    image_size: int = field(
        default=224,
        metadata=_about("default 224; 64 with --demo", demo=64, check=image_size_problem, fingerprint=True),
    )
    epochs: int | None = field(
        default=None,
        metadata=_about("default: the recipe's; 3 with --demo", demo=3, check=_positive, fingerprint=True),
    )
    batch_size: int | None = field(
        default=None,
        metadata=_about("default: the recipe's; 16 with --demo", demo=16, check=batch_size_problem, fingerprint=True),
    )
    learning_rate: float | None = field(
        default=None,
        metadata=_about(
            "Adam learning rate; default: the recipe's; 3e-4 with --demo",
            demo=3e-4,
            check=learning_rate_problem,
            option="--lr",
            fingerprint=True,
        ),
    )
    seed: int = field(
        default=0,
        metadata=_about(
            "seed of the paper recipe's split, and of the first repeat's initial head weights and batches (default 0)",
            check=_seed,
            fingerprint=True,
        ),
    )
    repeats: int = field(
        default=1,
        metadata=_about(
            f"trainings per source, with training seeds seed, seed+1, ... on one shared split (default 1, at most "
            f"{MAX_REPEATS})",
            check=_repeats,
            fingerprint=True,
        ),
    )
    force: bool = field(
        default=False, metadata=_about("retrain even if nothing changed since the last run (default off)")
    )
    skip_missing_weights: bool = field(
        default=False,
        metadata=_about(
            "train the sources whose weights are in the store and name the others in the report (default: refuse)"
        ),
    )
    masked_evaluation: bool = field(
        default=False,
        metadata=_about(
            "also evaluate with the lungs blacked out (the dataset's masks); the report flags models that still "
            "tell the classes apart (default off; on with --demo)",
            demo=True,
        ),
    )
    promotion_metric: str = field(
        default="accuracy",
        metadata=_about(
            "test metric on which a new best model must beat the champion (default accuracy)",
            choices=HIGHER_IS_BETTER,
        ),
    )
    promotion_margin: float = field(
        default=0.005, metadata=_about("by more than this much (default 0.005)", check=_fraction)
    )
    promote_despite_failures: bool = field(
        default=False,
        metadata=_about(
            "when some trainings fail, still promote the best of those that finished (default off: a run with a "
            "failed training reports the others and promotes nothing)"
        ),
    )

    prune_store: bool = field(
        default=False,
        metadata=_about(
            "at the end of the run, delete what `cxrtl store prune`'s default retention policy deletes (default off)"
        ),
    )

    # How train runs (defaults: cxrtl.recipes.TrainConfig's): speed, not results beyond floating-point noise.
    precision: str = field(
        default=TrainConfig.precision,
        metadata=_about(
            "auto (default): bf16 on a GPU that has it, else fp16 with a grad scaler; fp32 on the CPU",
            choices=PRECISIONS,
        ),
    )
    channels_last: bool = field(
        default=TrainConfig.channels_last, metadata=_about("channels-last memory format (default on)")
    )
    cudnn_benchmark: bool = field(
        default=TrainConfig.cudnn_benchmark, metadata=_about("let cuDNN pick its fastest kernels (default on)")
    )
    compile: bool = field(default=TrainConfig.compile, metadata=_about("torch.compile the model (default off)"))
    data_on_device: bool = field(
        default=TrainConfig.data_on_device,
        metadata=_about("keep a copy of the images in GPU memory when they fit (default on)"),
    )
    checkpoint_minutes: float = field(
        default=TrainConfig.checkpoint_minutes,
        metadata=_about(
            f"checkpoint at most once per this many minutes (default {TrainConfig.checkpoint_minutes:g}; "
            "0: every epoch), and always after the last epoch and on SIGTERM",
            check=_minutes,
        ),
    )
    keep_checkpoints: int = field(
        default=TrainConfig.keep_checkpoints,
        metadata=_about(
            "checkpoints left in the store once a source's training is done (default 0; 1 if given without a number)",
            check=_non_negative,
            bare=1,
        ),
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_setting(f.name, getattr(self, f.name))

    @classmethod
    def demo(cls) -> RunSettings:
        """The demo's settings: small enough for two CPU cores."""
        fields = dataclasses.fields(cls)
        return cls(**{f.name: f.metadata["demo"] for f in fields if f.metadata["demo"] is not dataclasses.MISSING})

    @classmethod
    def from_pipeline(cls, **parameters: Any) -> RunSettings:
        """Settings from pipeline parameters (any of them; the others keep their defaults)."""
        return cls(**{k: from_pipeline_value(k, v) for k, v in parameters.items()})

    def to_pipeline(self) -> dict[str, Any]:
        """The pipeline's arguments for these settings, each of its parameter's type (kfp.local refuses an int
        for a float parameter)."""
        return {
            f.name: value_type(f)(RECIPE_VALUE) if getattr(self, f.name) is None else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }

    def fingerprint(self) -> dict[str, Any]:
        """The settings whose change makes the next run retrain."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["fingerprint"]}

    def training_overrides(self) -> dict[str, Any]:
        """What a train step sets on top of the recipe: the seed, and whichever values are not the recipe's."""
        chosen = {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate}
        run = {name: getattr(self, name) for name in TRAIN_RUN_SETTINGS}
        return {"seed": self.seed, **{k: v for k, v in chosen.items() if v is not None}, **run}

    def trainings(self, sources: list[str]) -> list[dict[str, Any]]:
        """One ``{"source", "seed"}`` per training: each source with each of the ``repeats`` training seeds.

        The split is drawn once, by preprocess, from ``seed`` (the paper recipe) or from the pixels (the
        recommended one): every repeat trains and is tested on the same images, so comparisons stay paired.
        """
        return [{"source": source, "seed": self.seed + r} for source in sources for r in range(self.repeats)]


class SettingError(CxrtlError):
    """A bad value of setting ``name``: ``problem`` says what is wrong with it."""

    def __init__(self, name: str, problem: str, label: str | None = None) -> None:
        super().__init__(f"{label or name} {problem}")
        self.name = name
        self.problem = problem


@contextlib.contextmanager
def settings_named(label: Callable[[str], str]) -> Iterator[None]:
    """Settings made inside name a bad value as ``label(name)`` does: as the option or parameter that gave it."""
    try:
        yield
    except SettingError as exc:
        raise CxrtlError(f"{label(exc.name)} {exc.problem}") from None


def from_pipeline_value(name: str, value: Any) -> Any:
    """A pipeline parameter's value as setting ``name``'s (:data:`RECIPE_VALUE`: None, the recipe's value)."""
    return None if _is_optional(SETTINGS[name]) and value == RECIPE_VALUE else value


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` as setting ``name`` (None, the recipe's value, is not wrong), or None."""
    check = SETTINGS[name].metadata["check"]
    return check(value) if check and value is not None else None


def check_setting(name: str, value: Any, label: str | None = None) -> Any:
    """``value`` if it is a good value of setting ``name``, else a CxrtlError naming ``label`` (default: ``name``)."""
    problem = setting_problem(name, value)
    if problem:
        raise SettingError(name, problem, label)
    return value


def option(name: str) -> str:
    """The command-line option of setting ``name``."""
    return SETTINGS[name].metadata["option"] or "--" + name.replace("_", "-")


def value_type(f: dataclasses.Field) -> type:
    """The setting's type without ``None``: ``int`` for ``int | None``, ``list`` for ``list[str]``."""
    hint = _HINTS[f.name]
    if isinstance(hint, types.UnionType):
        hint = next(t for t in typing.get_args(hint) if t is not type(None))
    return typing.get_origin(hint) or hint


def _is_optional(f: dataclasses.Field) -> bool:
    return type(None) in typing.get_args(_HINTS[f.name])


# The settings of how train runs, handed to it as they are.
TRAIN_RUN_SETTINGS = (
    "precision",
    "channels_last",
    "cudnn_benchmark",
    "compile",
    "data_on_device",
    "checkpoint_minutes",
    "keep_checkpoints",
)
_HINTS = typing.get_type_hints(RunSettings)
SETTINGS = {f.name: f for f in dataclasses.fields(RunSettings)}
