"""The report's figure sections, from plain per-source inputs, and an evaluation folder's Grad-CAM file.

The report passes what it has already read (predictions, confusion matrices, intervals, the models' training
histories) and what :func:`read_gradcam` gives; figures without inputs are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cxrtl import figures
from cxrtl.gradcam import GRADCAM_FILE, GradCamSet
from cxrtl.html_page import Figure, Section


def read_gradcam(folder: Path) -> GradCamSet | None:
    """The folder's Grad-CAM set; None for an evaluation from before evaluate wrote one."""
    cams = Path(folder) / GRADCAM_FILE
    return GradCamSet.load(cams) if cams.is_file() else None


def figure_sections(
    scores: Mapping[str, figures.Scores],
    confusions: Mapping[str, Mapping[str, int]],
    intervals: Mapping[str, Mapping[str, figures.Interval]],
    histories: Mapping[str, Mapping[str, Any]],
    cams: Mapping[str, GradCamSet],
) -> list[Section]:
    """Sections of figures for the sources in the order given (keep the ranking's order: colours follow it).

    ``histories``: per source, the model's ``selection_split``, ``best_epoch`` and per-epoch ``history``.
    """
    histories = {s: h for s, h in histories.items() if h.get("history")}
    splits = sorted({h["selection_split"] for h in histories.values()})
    comparison: list[Figure] = []
    if intervals:
        comparison.append(
            _figure(
                figures.forest_figure(intervals),
                "Forest plot of every metric's 95 % interval per source",
                "Each metric's point estimate and 95 % interval per source: sources whose intervals overlap "
                "widely are not told apart by this test split.",
            )
        )
    if scores:
        comparison += [
            _figure(
                figures.roc_figure(scores, intervals.get("roc_auc")),
                "ROC curves of all sources",
                "ROC curves on the test split; the legend gives each source's ROC AUC and 95 % interval.",
            ),
            _figure(
                figures.pr_figure(scores, intervals.get("pr_auc")),
                "Precision-recall curves",
                "Precision-recall curves on the test split; the legend gives each source's PR AUC and 95 % "
                "interval where there is one.",
            ),
            _figure(
                figures.reliability_figure(scores),
                "Reliability diagram",
                "Observed COVID share against the mean predicted probability in ten equal bins, one point per "
                "filled bin sized by its images (counted below): on the dashed diagonal is calibrated.",
            ),
        ]
    if confusions:
        comparison.append(
            _figure(
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
        note = "Each source's loss (above) and accuracy (below) per epoch on the training and the "
        note += f"{' / '.join(splits)} split (the one that "
        note += "picks the best epoch, ringed); the selection loss is unweighted cross-entropy."
        sections.append(Section("Training", [_figure(history, "Training history", note)]))
    if cams:
        note = (
            "Grad-CAM of the last convolutional block for the class each model predicted: the same test images "
            "(the lowest SHA-256 of the id per class) for every source, then its most confident mistakes."
        )
        sections.append(Section("Where the models look", [_figure(figures.gradcam_figure(cams), "Grad-CAM", note)]))
    return sections


def _figure(png: bytes, alt: str, caption: str) -> Figure:
    """A figure shown at the width it was drawn for (its PNG holds figures.SCALE pixels per page pixel)."""
    return Figure(png, alt, caption, figures.display_width(png))
