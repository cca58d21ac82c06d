"""The JSON records the steps hand each other: the prepared data's info, model metadata, evaluation results,
the data checks and the champion card.

Each is a dataclass. ``to_dict()`` gives what its file holds, with the record's ``schema_version``;
``from_dict()`` reads it back and refuses, in one line naming the file, a record with a field missing
or unknown, or one of a newer schema. Files written before records carried a version read as version 1,
whose fields they have. A change to a record's fields bumps its ``SCHEMA_VERSION`` and teaches its
``from_dict`` the versions before. Undefined metrics (NaN) are written as null, JSON having no NaN,
and read back as NaN.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from cxrtl import __version__
from cxrtl.errors import CxrtlError
from cxrtl.metrics import json_safe
from cxrtl.recipes import TrainConfig

SCHEMA_FIELD = "schema_version"


class Record:
    """A dataclass written as versioned JSON; subclasses convert their nested fields in ``_from_fields``."""

    SCHEMA_VERSION: ClassVar[int] = 1
    KIND: ClassVar[str]  # what errors call it

    def to_dict(self) -> dict[str, Any]:
        return {SCHEMA_FIELD: self.SCHEMA_VERSION, **json_safe(_plain(self))}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Self:
        """The record in ``data`` (read from ``where``, which errors name)."""
        if not isinstance(data, dict):
            raise CxrtlError(f"{where}: not {cls.KIND} (a JSON object was expected)")
        version = data.get(SCHEMA_FIELD, 1)
        if not isinstance(version, int) or version > cls.SCHEMA_VERSION:
            raise CxrtlError(
                f"{where}: {cls.KIND} of schema version {version!r}; this cxrtl reads up to "
                f"{cls.SCHEMA_VERSION}, upgrade it"
            )
        values = {k: v for k, v in data.items() if k != SCHEMA_FIELD}
        if version < cls.SCHEMA_VERSION:
            values = cls._upgrade(values, version)
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in names if name not in values]
        unknown = sorted(set(values) - set(names))
        if missing or unknown:
            problem = f"no {', '.join(missing)}" if missing else f"unknown field(s) {', '.join(unknown)}"
            raise CxrtlError(f"{where}: damaged {cls.KIND} ({problem})")
        try:
            return cls(**cls._from_fields(values))
        except (CxrtlError, TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CxrtlError(f"{where}: damaged {cls.KIND} ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _upgrade(cls, values: dict[str, Any], version: int) -> dict[str, Any]:
        """The fields of a record of an older ``version``, in the current schema."""
        return values

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The constructor arguments from the fields as JSON holds them (nested records, NaN)."""
        return values


def _plain(value: Any) -> Any:
    """Nested dataclasses as dicts; the training configuration in its flat form."""
    if isinstance(value, TrainConfig):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _nan_values(values: dict[str, float | None]) -> dict[str, float]:
    return {name: _nan(v) for name, v in values.items()}


def _nan_lists(values: dict[str, list[float | None]]) -> dict[str, list[float]]:
    return {name: [_nan(v) for v in items] for name, items in values.items()}


def _model_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The fields model metadata and its summary share, from JSON."""
    return {
        **values,
        "config": TrainConfig.from_dict(values["config"]),
        "dataset": DatasetRef(**values["dataset"]),
        "selection_score": _nan(values["selection_score"]),
        "history": _nan_lists(values["history"]),
    }


def _model_fields_v1(values: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of the model fields: accuracy picked the best epoch and 0.5 was the only threshold."""
    upgraded = {k: v for k, v in values.items() if k != "selection_accuracy"}
    return {
        **upgraded,
        "config": {"selection_metric": "accuracy", **values["config"]},
        "selection_score": values["selection_accuracy"],
        "validation_threshold": None,
    }


def _intervals_v1(values: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of the results: Wilson intervals only, no reasons, no bootstrap, one threshold."""
    return {**values, "interval_methods": {name: "wilson" for name in values["intervals_95"]}, "undefined": {}}


@dataclass(frozen=True)
class DatasetRef:
    """Which dataset a model learnt from, as ingest recorded it (None where it recorded nothing)."""

    slug: str | None
    version: str | None
    sha256: str | None

    @classmethod
    def of(cls, record: dict[str, Any] | None) -> DatasetRef:
        """From an ingest record (``info.json``'s ``dataset``), which may be missing."""
        record = record or {}
        return cls(**{f.name: record.get(f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class ModelOrigin:
    """Where a model came from: what the champion card shares with the model's metadata."""

    source: str
    source_description: str
    weights_sha256: str
    weights_stand_in: bool
    run_id: str
    dataset: DatasetRef
    best_epoch: int
    selection_split: str
    # The container image it trained in (cxrtl.running_image): None outside one, and in records older than
    # the model's schema 3 and the card's 3.
    image: str | None


@dataclass(frozen=True)
class ModelSummary(ModelOrigin):
    """What of a model's metadata travels with its evaluation into the report and the champion card."""

    selection_score: float  # config.training.selection_metric on the selection split at the best epoch
    # The COVID probability threshold chosen on the validation split (Youden's J); None without one.
    validation_threshold: float | None
    history: dict[str, list[float]]  # per epoch: train_loss, train_accuracy, select_accuracy, select_score
    config: TrainConfig
    # What it trained on (cxrtl.device.DeviceInfo): the GPU's name or "cpu"; the CUDA runtime torch was built
    # for and the newest CUDA the driver supports, None on the CPU. All None: trained before schema 3.
    device_name: str | None
    cuda_runtime: str | None
    cuda_driver: str | None

    @classmethod
    def of(cls, metadata: ModelMetadata) -> ModelSummary:
        return cls(**_fields_of(cls, metadata))


@dataclass(frozen=True)
class ModelMetadata(ModelSummary, Record):
    """What a trained model is: ``model.json`` beside ``model.pt``, and inside it."""

    KIND: ClassVar[str] = "model metadata"
    # 2: the selection metric, score and validation threshold; the config's speed switches and checkpoint
    # policy, and the precision that ran. 3: the device's name, CUDA runtime and driver, the image.
    SCHEMA_VERSION: ClassVar[int] = 3

    backbone_tensors_loaded: int
    resumed_from_epoch: int | None
    image_size: int
    device: str
    precision: str  # what ran: fp32, bf16 or fp16 (the config's may say auto)
    cxrtl_version: str
    trained_at: str

    # What the pipeline shows of a model in its UI (the KFP Model artifact's metadata).
    ARTIFACT_FIELDS: ClassVar[tuple[str, ...]] = (
        "source",
        "weights_sha256",
        "weights_stand_in",
        "backbone_tensors_loaded",
        "best_epoch",
        "selection_split",
    )

    def artifact_metadata(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.ARTIFACT_FIELDS}

    @classmethod
    def _upgrade(cls, values: dict[str, Any], version: int) -> dict[str, Any]:
        if version < 2:
            values = {"precision": "fp32", **_config_upgraded(_model_fields_v1(values), version)}
        return _device_upgraded(values)

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        return _model_fields(values)


# What models trained before schema 2 ran with: the speed switches and checkpoint policy added then.
_CONFIG_BEFORE_2 = {
    "precision": "fp32",
    "channels_last": False,
    "cudnn_benchmark": False,
    "compile": False,
    "data_on_device": False,
    "checkpoint_minutes": 0.0,
}


def _device_upgraded(model: dict[str, Any]) -> dict[str, Any]:
    """A model's fields of schema 2 in schema 3: the device and image it trained on were not recorded."""
    return {"device_name": None, "cuda_runtime": None, "cuda_driver": None, "image": None, **model}


def _config_upgraded(model: dict[str, Any], version: int) -> dict[str, Any]:
    """A model's fields (metadata or summary) with a config of schema 2."""
    if version >= 2 or not isinstance(model.get("config"), dict):
        return model
    return {**model, "config": {**_CONFIG_BEFORE_2, **model["config"]}}


def _fields_of(cls: type, record: Any) -> dict[str, Any]:
    """The values of ``record`` for the fields of dataclass ``cls`` (a part of ``record``'s class)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class AtThreshold:
    """The threshold metrics (cxrtl.metrics.THRESHOLD_METRICS) at one decision threshold."""

    threshold: float  # COVID probability at or above which an image counts as COVID
    metrics: dict[str, float]  # NaN where undefined
    intervals_95: dict[str, list[float]]  # [low, high], NaN where undefined
    interval_methods: dict[str, str]  # metric: its method (cxrtl.metrics.INTERVAL_METHODS)
    undefined: dict[str, str]  # metric: why it is undefined
    confusion: dict[str, int]  # tn, fp, fn, tp

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> AtThreshold:
        return cls(
            **{**values, "metrics": _nan_values(values["metrics"]), "intervals_95": _nan_lists(values["intervals_95"])}
        )


@dataclass(frozen=True)
class EvaluationResult(Record):
    """A model's results on the test split: ``metrics.json``."""

    KIND: ClassVar[str] = "evaluation results"
    # 2: every metric's interval and its method, undefined reasons, the bootstrap, the validation threshold's
    # results; the model's summary of schema 2. 3: the model's device and image (ModelSummary).
    SCHEMA_VERSION: ClassVar[int] = 3

    n: int  # test images
    threshold: float  # COVID probability at or above which an image counts as COVID: 0.5
    metrics: dict[str, float]  # cxrtl.metrics.METRIC_NAMES; NaN where undefined
    intervals_95: dict[str, list[float]]  # [low, high], NaN where undefined
    interval_methods: dict[str, str]  # metric: its method (cxrtl.metrics.INTERVAL_METHODS)
    undefined: dict[str, str]  # metric: why it is undefined
    confusion: dict[str, int]  # tn, fp, fn, tp
    bootstrap: dict[str, Any] | None  # resamples, seed, confidence, ece_bins; None before version 2
    at_validation_threshold: AtThreshold | None  # at model.validation_threshold, where the model has one
    model: ModelSummary

    @classmethod
    def _upgrade(cls, values: dict[str, Any], version: int) -> dict[str, Any]:
        if version < 2:
            values = {
                **_intervals_v1(values),
                "bootstrap": None,
                "at_validation_threshold": None,
                # Version 1 kept the history in model.json only.
                "model": {"history": {}, **_config_upgraded(_model_fields_v1(values["model"]), version)},
            }
        return {**values, "model": _device_upgraded(values["model"])}

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        at_validation = values["at_validation_threshold"]
        return {
            **values,
            "metrics": _nan_values(values["metrics"]),
            "intervals_95": _nan_lists(values["intervals_95"]),
            "at_validation_threshold": None if at_validation is None else AtThreshold.from_json(at_validation),
            "model": ModelSummary(**_model_fields(values["model"])),
        }


@dataclass(frozen=True)
class Promotion:
    metric: str
    margin: float  # the minimum practical difference
    reason: str
    # The paired test against the champion before (None: there was none): its name, p-value, and on how many
    # test images neither model had seen.
    test: str | None = None
    p_value: float | None = None
    images: int | None = None


@dataclass(frozen=True)
class ChampionCard(ModelOrigin, Record):
    """What the champion is and why it was promoted: the champion's ``card.json`` (and ``card.md``)."""

    # 2: every metric's interval method and undefined reasons. 3: the image the model trained in.
    SCHEMA_VERSION: ClassVar[int] = 3
    KIND: ClassVar[str] = "champion card"

    recipe: str
    test_images: int
    metrics: dict[str, float]
    intervals_95: dict[str, list[float]]
    interval_methods: dict[str, str]
    undefined: dict[str, str]
    confusion: dict[str, int]
    promotion: Promotion
    code_version: str
    promoted_at: str

    @classmethod
    def of(cls, result: EvaluationResult, promotion: Promotion, promoted_at: str) -> ChampionCard:
        return cls(
            **_fields_of(ModelOrigin, result.model),
            recipe=result.model.config.recipe,
            test_images=result.n,
            metrics=result.metrics,
            intervals_95=result.intervals_95,
            interval_methods=result.interval_methods,
            undefined=result.undefined,
            confusion=result.confusion,
            promotion=promotion,
            code_version=__version__,
            promoted_at=promoted_at,
        )

    @classmethod
    def _upgrade(cls, values: dict[str, Any], version: int) -> dict[str, Any]:
        return {"image": None, **(_intervals_v1(values) if version < 2 else values)}

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {
            **values,
            "dataset": DatasetRef(**values["dataset"]),
            "metrics": _nan_values(values["metrics"]),
            "intervals_95": _nan_lists(values["intervals_95"]),
            "promotion": Promotion(**values["promotion"]),
        }


@dataclass(frozen=True)
class DuplicateSummary:
    """Preprocessing's groups of duplicate images (cxrtl.duplicates), each kept within one split."""

    images: int
    groups: int
    exact_duplicate_groups: int
    near_duplicate_groups: int
    images_in_duplicate_groups: int
    groups_with_both_classes: int

    @classmethod
    def from_json(cls, values: dict[str, Any] | None) -> DuplicateSummary | None:
        return None if values is None else cls(**values)


@dataclass(frozen=True)
class PreparedInfo(Record):
    """How a prepared dataset was made: its ``info.json`` (cxrtl.data)."""

    KIND: ClassVar[str] = "prepared dataset's info"
    # 2: the version recorded; version 1's oldest files lack duplicates, collections and masks
    # 3: small_test_classes and min_test_images_per_class
    SCHEMA_VERSION: ClassVar[int] = 3

    recipe: str
    image_size: int
    seed: int
    classes: list[str]  # cxrtl.data.CLASS_NAMES, index = label
    available: dict[str, int]  # images found per class
    counts: dict[str, dict[str, int]]  # per split, images per class
    small_test_classes: dict[str, int] | None  # test images of each class below the next field; None: not checked
    min_test_images_per_class: int | None  # cxrtl.preprocess.MIN_TEST_IMAGES_PER_CLASS when prepared
    total: int
    skipped_count: int
    skipped: list[str]  # the unreadable images (paths in the dataset)
    duplicates: DuplicateSummary | None  # None: prepared before duplicates were looked for
    collections: dict[str, dict[str, int]] | None  # per class, images per collection; None without metadata
    masks: str  # "ok", or why the lung masks cannot be used
    dataset: dict[str, Any] | None  # ingest's record of the dataset (slug, version, sha256, ...); None without

    @classmethod
    def _upgrade(cls, values: dict[str, Any], version: int) -> dict[str, Any]:
        return {
            "duplicates": None,
            "collections": None,
            "masks": "not recorded (prepared by an older cxrtl)",
            "small_test_classes": None,
            "min_test_images_per_class": None,
            **values,
        }

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "duplicates": DuplicateSummary.from_json(values["duplicates"])}


@dataclass(frozen=True)
class MaskedCheck:
    """A model's results on the test images with their lungs blacked out (``masked`` in ``checks.json``)."""

    n: int
    accuracy: float  # NaN where undefined
    sensitivity: float
    specificity: float
    balanced_accuracy: float
    flag_at: float  # the balanced accuracy at or above which the model is flagged
    flagged: bool  # it still tells the classes apart without the lungs: it may read something else


@dataclass(frozen=True)
class DataChecks(Record):
    """What evaluate found about the data behind a model's numbers: its ``checks.json`` (cxrtl.data_checks)."""

    KIND: ClassVar[str] = "data checks"
    # 2: the version recorded; version 1's oldest files lack trained_on_test_images
    # 3: seen_test_images and seen_test_images_changed (cxrtl.seen: copies re-encoded or resized count too)
    # 4: split_counts
    SCHEMA_VERSION: ClassVar[int] = 4

    duplicates: DuplicateSummary | None  # the prepared data's; None where it recorded none
    # Per collection of the test images: images per class (cxrtl.data.CLASS_NAMES), n, correct and accuracy
    # (at 0.5); None without metadata
    collections: dict[str, dict[str, float]] | None
    masked: MaskedCheck | None  # None: not asked for
    trained_on_test_images: int | None  # None: it cannot be told (no content hashes)
    # Trained on, or chose the epoch on where that was not the test split; of them, copies that differ in content
    seen_test_images: int | None
    seen_test_images_changed: int | None
    # The prepared data's images per class in each split (PreparedInfo.counts); None before schema 4
    split_counts: dict[str, dict[str, int]] | None

    @classmethod
    def _upgrade(cls, values: dict[str, Any], version: int) -> dict[str, Any]:
        unrecorded = ("trained_on_test_images", "seen_test_images", "seen_test_images_changed", "split_counts")
        return {**dict.fromkeys(unrecorded), **values}

    @classmethod
    def _from_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        masked = values["masked"]
        if masked is not None:
            rates = ("accuracy", "sensitivity", "specificity", "balanced_accuracy")
            masked = MaskedCheck(**{**masked, **{name: _nan(masked[name]) for name in rates}})
        return {**values, "duplicates": DuplicateSummary.from_json(values["duplicates"]), "masked": masked}
