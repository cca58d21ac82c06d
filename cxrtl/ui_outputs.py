"""What the KFP UI shows of an evaluation: every scalar of metrics.json, the confusion matrix and the ROC curve.

Read from the files evaluate wrote, so a metric added to metrics.json appears in the UI without a code change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtl.data import CLASS_NAMES
from cxrtl.evaluate import METRICS_FILE, ROC_FILE
from cxrtl.records import SCHEMA_FIELD

# Not metrics: the record's version, and the model's description (the Model artifact's metadata shows it).
_NOT_METRICS = (SCHEMA_FIELD, "model")


@dataclass
class UiOutputs:
    scalars: dict[str, float]  # flattened names: "metrics.accuracy", "intervals_95.accuracy[0]", ...
    classes: list[str]
    confusion: list[list[int]]  # rows: true class, columns: predicted, in ``classes`` order
    roc: dict[str, list[float]]  # fpr, tpr, thresholds; empty where undefined (one class)


def metric_scalars(document: Mapping[str, Any]) -> dict[str, float]:
    """Every finite number in ``document`` (metrics.json), by its dotted path; null, NaN, text and flags left out."""
    out: dict[str, float] = {}

    def walk(value: Any, name: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{name}.{key}" if name else str(key))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{name}[{i}]")
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)

    walk({k: v for k, v in document.items() if k not in _NOT_METRICS}, "")
    return out


def ui_outputs(folder: Path) -> UiOutputs:
    """The UI's view of an evaluation folder (``cxrtl evaluate`` output)."""
    document = json.loads((Path(folder) / METRICS_FILE).read_text())
    c = document["confusion"]
    return UiOutputs(
        scalars=metric_scalars(document),
        classes=list(CLASS_NAMES),
        confusion=[[c["tn"], c["fp"]], [c["fn"], c["tp"]]],
        roc=json.loads((Path(folder) / ROC_FILE).read_text()),
    )
