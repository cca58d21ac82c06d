"""The report's figure sections, from plain per-source inputs, and the figure inputs of an evaluation folder.

The report passes what it has already read (predictions, confusion matrices, intervals) and what
:func:`read_folder` gives (training history, Grad-CAM); figures without inputs are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrtl import figures
from cxrtl.errors import CxrtlError
from cxrtl.evaluate import HISTORY_FILE
from cxrtl.gradcam import GRADCAM_FILE, GradCamSet
from cxrtl.html_page import Figure, Section


@dataclass
class FolderFigures:
    """What an evaluation folder holds for the figures; None where an older evaluate did not write it."""

    history: dict[str, Any] | None  # history.json: source, selection_split, best_epoch, history
    gradcam: GradCamSet | None


def read_folder(folder: Path) -> FolderFigures:
    folder = Path(folder)
    history, cams = folder / HISTORY_FILE, folder / GRADCAM_FILE
    try:
        loaded = json.loads(history.read_text()) if history.is_file() else None
    except ValueError:
        raise CxrtlError(f"{history}: damaged JSON; evaluate again") from None
    return FolderFigures(loaded, GradCamSet.load(cams) if cams.is_file() else None)


def figure_sections(
    scores: Mapping[str, figures.Scores],
    confusions: Mapping[str, Mapping[str, int]],
    intervals: Mapping[str, Mapping[str, figures.Interval]],
    folders: Mapping[str, FolderFigures],
) -> list[Section]:
    """Sections of figures for the sources in the order given (keep the ranking's order: colours follow it)."""
    histories = {s: f.history for s, f in folders.items() if f.history}
    cams = {s: f.gradcam for s, f in folders.items() if f.gradcam is not None}
    splits = sorted({h["selection_split"] for h in histories.values()})
    comparison: list[Figure] = []
    if intervals:
        comparison.append(
            Figure(
                figures.forest_figure(intervals),
                "Forest plot of every metric's 95 % interval per source",
                "Each metric's point estimate and 95 % interval per source: sources whose intervals overlap "
                "widely are not told apart by this test split.",
            )
        )
    if scores:
        comparison += [
            Figure(figures.roc_figure(scores), "ROC curves of all sources", "ROC curves on the test split."),
            Figure(figures.pr_figure(scores), "Precision-recall curves", "Precision-recall curves on the test split."),
            Figure(
                figures.reliability_figure(scores),
                "Reliability diagram",
                "Observed COVID share against predicted probability in ten equal bins: on the diagonal is calibrated.",
            ),
        ]
    if confusions:
        comparison.append(
            Figure(
                figures.confusion_figure(confusions),
                "Confusion matrices",
                "Test-split confusion matrices (rows: true class; shade: share of the row).",
            )
        )
    sections = [Section("Figures", comparison)] if comparison else []
    if histories:
        history = figures.history_figure(
            {s: h["history"] for s, h in histories.items()},
            {s: h["best_epoch"] for s, h in histories.items()},
            "/".join(splits),
        )
        note = f"Loss and accuracy per epoch on the training and the {' / '.join(splits)} split (the one that "
        note += "picks the best epoch, ringed); the selection loss is unweighted cross-entropy."
        sections.append(Section("Training", [Figure(history, "Training history", note)]))
    if cams:
        note = (
            "Grad-CAM of the last convolutional block for the class each model predicted: the same test images "
            "(the lowest SHA-256 of the id per class) for every source, then its most confident mistakes."
        )
        sections.append(Section("Where the models look", [Figure(figures.gradcam_figure(cams), "Grad-CAM", note)]))
    return sections
