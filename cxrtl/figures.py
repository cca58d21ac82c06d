"""The report's figures as PNG bytes: curves, training history, confusion matrices, calibration, intervals, Grad-CAM.

Each function takes plain inputs keyed by weight source (numpy arrays, dicts) and returns one PNG. The sources
keep one colour each across the figures (in the order given), from a qualitative map of ten distinct colours.
The output is deterministic: no timestamp or software version is written into the PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from PIL import Image  # matplotlib's own dependency
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from cxrtl.data import CLASS_NAMES
from cxrtl.gradcam import GradCamSet

DPI = 80
# (y_true with 1 = COVID, COVID probability) of one source's test images.
Scores = tuple[np.ndarray, np.ndarray]
# (point, low, high) of one metric for one source; a None point is an undefined metric.
Interval = tuple[float | None, float | None, float | None]

_HISTORY_PANELS = (("loss", "Loss"), ("accuracy", "Accuracy"))
_LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "fontsize": "small", "frameon": False}


def colours(sources: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One colour per source, in the order given (tab10 holds ten distinct ones; more repeat)."""
    palette = plt.get_cmap("tab10").colors
    return {source: palette[i % len(palette)] for i, source in enumerate(sources)}


def roc_figure(scores: Mapping[str, Scores]) -> bytes:
    """The ROC curves of all sources on one plot; a source with one class only is listed as undefined."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for source, colour in colours(list(scores)).items():
        y, p = _scores(scores[source])
        if len(np.unique(y)) < 2:
            ax.plot([], [], color=colour, label=f"{source} (undefined: one class)")
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=colour, linewidth=1.5, label=source)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="Sensitivity", title="ROC, test split (COVID positive)")
    _square(ax)
    ax.legend(**_LEGEND)
    return _png(fig)


def pr_figure(scores: Mapping[str, Scores]) -> bytes:
    """The precision-recall curves of all sources on one plot, with the COVID share as the chance line."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    prevalences = []
    for source, colour in colours(list(scores)).items():
        y, p = _scores(scores[source])
        if not y.any():
            ax.plot([], [], color=colour, label=f"{source} (undefined: no COVID image)")
            continue
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, color=colour, linewidth=1.5, drawstyle="steps-post", label=source)
        prevalences.append(y.mean())
    if prevalences:
        ax.axhline(float(np.mean(prevalences)), color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision", title="Precision-recall, test split (COVID positive)")
    _square(ax)
    ax.legend(**_LEGEND)
    return _png(fig)


def history_figure(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    best_epochs: Mapping[str, int | None] | None = None,
    selection_split: str = "selection",
) -> bytes:
    """Per-epoch loss and accuracy of each source: training solid, the selection split dashed, best epoch ringed.

    ``histories`` are ModelMetadata.history: train_loss, train_accuracy, select_loss, select_accuracy (a model
    trained before select_loss was recorded simply lacks that line). NaN values are gaps.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for source, colour in colours(list(histories)).items():
        history = histories[source]
        best = (best_epochs or {}).get(source)
        for ax, (quantity, _) in zip(axes, _HISTORY_PANELS, strict=True):
            for prefix, style in (("train", "-"), ("select", "--")):
                values = np.asarray(history.get(f"{prefix}_{quantity}", []), dtype=float)
                if values.size == 0:
                    continue
                epochs = np.arange(1, values.size + 1)
                ax.plot(epochs, values, style, color=colour, linewidth=1.3, marker=".", markersize=4)
                if prefix == "select" and best and 1 <= best <= values.size:
                    ax.plot(best, values[best - 1], "o", mfc="none", mec=colour, markersize=9)
    for ax, (_, title) in zip(axes, _HISTORY_PANELS, strict=True):
        ax.set(xlabel="Epoch", ylabel=title, title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, linewidth=2, label=s) for s, c in colours(list(histories)).items()]
    handles += [
        plt.Line2D([], [], color="black", linestyle="-", label="training split"),
        plt.Line2D([], [], color="black", linestyle="--", label=f"{selection_split} split"),
        plt.Line2D([], [], color="black", marker="o", mfc="none", linestyle="none", label="best epoch"),
    ]
    axes[1].legend(handles=handles, **_LEGEND)
    return _png(fig)


def confusion_figure(confusions: Mapping[str, Mapping[str, int]], columns: int = 5) -> bytes:
    """One small confusion matrix per source (rows: true class, columns: predicted), from {tn, fp, fn, tp}."""
    n = len(confusions)
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns) if n else 1
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.1 * columns + 0.8, 2.2 * rows), squeeze=False, sharex=True, sharey=True,
        layout="constrained",
    )  # fmt: skip
    for ax, (source, c) in zip(axes.flat, confusions.items(), strict=False):
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        # Shaded by the share of each true class, so that both classes read alike whatever their sizes.
        share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks([0, 1], CLASS_NAMES, fontsize="small")
        ax.set_yticks([0, 1], CLASS_NAMES, fontsize="small")
        ax.set_title(source, fontsize="small")
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.supxlabel("Predicted", fontsize="small")
    fig.supylabel("True", fontsize="small")
    return _png(fig)


def reliability_figure(scores: Mapping[str, Scores], bins: int = 10) -> bytes:
    """Observed COVID share against the predicted probability, in ``bins`` equal-width bins, all sources."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for source, colour in colours(list(scores)).items():
        y, p = _scores(scores[source])
        observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
        ax.plot(predicted, observed, color=colour, marker="o", markersize=3, linewidth=1.3, label=source)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    ax.set(xlabel="Predicted COVID probability", ylabel="Observed COVID share", title="Reliability, test split")
    _square(ax)
    ax.legend(**_LEGEND)
    return _png(fig)


def forest_figure(intervals: Mapping[str, Mapping[str, Interval]], columns: int = 3) -> bytes:
    """Per metric, each source's point and 95 % interval on one row, so overlapping intervals show at a glance.

    ``intervals``: {metric: {source: (point, low, high)}}; a None point is drawn as "undefined".
    """
    metrics = list(intervals)
    sources = list(dict.fromkeys(s for m in metrics for s in intervals[m]))
    palette = colours(sources)
    columns = max(1, min(columns, len(metrics)))
    rows = math.ceil(len(metrics) / columns) if metrics else 1
    height = 0.6 + 0.28 * max(len(sources), 1)
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.8 * columns + 2.2, height * rows), squeeze=False, sharey=True, layout="constrained"
    )
    positions = {s: len(sources) - 1 - i for i, s in enumerate(sources)}  # the first source at the top
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for source, (point, low, high) in intervals[metric].items():
            y, colour = positions[source], palette[source]
            if point is None or not math.isfinite(point):
                ax.text(0.5, y, "undefined", transform=ax.get_yaxis_transform(), ha="center", va="center",
                        fontsize="x-small", color=colour, style="italic")  # fmt: skip
                continue
            if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
                ax.plot([low, high], [y, y], color=colour, linewidth=2)
            ax.plot(point, y, "o", color=colour, markersize=4)
        ax.set_yticks(list(positions.values()), list(positions), fontsize="small")
        ax.set_ylim(-0.7, len(sources) - 0.3)
        ax.set_title(metric, fontsize="medium")
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize="small")
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    fig.suptitle("Point estimates and 95 % intervals, test split")
    return _png(fig)


def gradcam_figure(sets: Mapping[str, GradCamSet], max_columns: int = 9) -> bytes:
    """Rows: sources; tiles: the image in grey, the heat map over it, framed green if right and red if wrong.

    Each row shows the images common to all sources first, then that source's most confident mistakes.
    """
    n_columns = min(max_columns, max((len(s.ids) for s in sets.values()), default=1))
    n_columns = max(n_columns, 1)
    n_rows = max(len(sets), 1)
    fig, axes = plt.subplots(
        n_rows, n_columns, figsize=(1.1 * n_columns + 1.6, 1.45 * n_rows + 0.3), squeeze=False, layout="constrained"
    )
    for row, (source, cams) in zip(axes, sets.items(), strict=False):
        row[0].set_ylabel(source, fontsize="small", rotation=0, ha="right", va="center")
        for ax, k in zip(row, range(len(cams.ids)), strict=False):
            ax.imshow(cams.images[k], cmap="gray", vmin=0, vmax=255)
            ax.imshow(cams.maps[k], cmap="jet", alpha=0.4, vmin=0, vmax=255)
            right = cams.correct[k]
            for spine in ax.spines.values():
                spine.set_edgecolor("#1a9850" if right else "#d73027")
                spine.set_linewidth(2.5)
            kind = "" if cams.kinds[k] == "fixed" else " mistake"
            ax.set_title(
                f"{CLASS_NAMES[cams.labels[k]]} p={cams.probabilities[k]:.2f}\n{'right' if right else 'WRONG'}{kind}",
                fontsize=6,
            )
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in row[len(cams.ids) :]:
            ax.set_frame_on(False)
    fig.suptitle("Grad-CAM of the predicted class (p = COVID probability; green: right, red: wrong)", fontsize=9)
    return _png(fig)


def _scores(pair: Scores) -> tuple[np.ndarray, np.ndarray]:
    y, p = pair
    return np.asarray(y).astype(int), np.asarray(p, dtype=float)


def _square(ax: plt.Axes) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def _png(fig: Figure) -> bytes:
    """The figure as a 256-colour PNG: a third of the size of matplotlib's RGBA one, which counts in a page
    that embeds every figure; no metadata (Pillow writes none), so the same figure gives the same bytes."""
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    rendered.seek(0)
    with Image.open(rendered) as image:
        palette = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()
