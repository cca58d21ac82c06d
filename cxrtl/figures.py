"""The report's figures as PNG bytes: curves, training history, confusion matrices, calibration, intervals, Grad-CAM.

Each function takes plain inputs keyed by weight source (numpy arrays, dicts) and returns one PNG. The sources
keep one colour each across the figures (in the order given), from a qualitative map of ten distinct colours.
The output is deterministic: no timestamp or software version is written into the PNG.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from PIL import Image  # matplotlib's own dependency
from sklearn.metrics import precision_recall_curve, roc_curve

from cxrtl.data import CLASS_NAMES
from cxrtl.gradcam import GradCamSet
from cxrtl.metrics import METRIC_LABELS

# Figures are drawn for DISPLAY_DPI on the page and rendered at SCALE times that, for sharp text on high-density
# screens and in slides: the page shows each at its PNG's width / SCALE. At 100 px per inch, matplotlib's
# smallest size used here (8 pt) is 11 px on the page.
DISPLAY_DPI = 100
SCALE = 2
FONT = {"font.size": 10, "axes.titlesize": 11, "legend.fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9}
HEAT_MAP = "inferno"  # perceptually ordered, unlike the rainbow "jet": brighter is always more
# (y_true with 1 = COVID, COVID probability) of one source's test images.
Scores = tuple[np.ndarray, np.ndarray]
# (point, low, high) of one metric for one source; a None point is an undefined metric.
Interval = tuple[float | None, float | None, float | None]

_LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "frameon": False}


def display_width(png: bytes) -> int:
    """The width in CSS pixels a figure from this module is drawn for (its PNG's width, from the IHDR chunk)."""
    return int.from_bytes(png[16:20], "big") // SCALE


def colours(sources: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """One colour per source, in the order given (tab10 holds ten distinct ones; more repeat)."""
    palette = plt.get_cmap("tab10").colors
    return {source: palette[i % len(palette)] for i, source in enumerate(sources)}


def _styled(draw: Callable[..., bytes]) -> Callable[..., bytes]:
    """``draw`` with the module's font sizes (matplotlib reads them when a figure is made and saved)."""

    @functools.wraps(draw)
    def styled(*args: Any, **kwargs: Any) -> bytes:
        with plt.rc_context(FONT):
            return draw(*args, **kwargs)

    return styled


@_styled
def roc_figure(scores: Mapping[str, Scores], aucs: Mapping[str, Interval] | None = None) -> bytes:
    """The ROC curves of all sources on one plot, each labelled with its ROC AUC and interval from ``aucs``
    (the evaluation's, so the legend and the tables agree); a source with one class only is listed as undefined."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for source, colour in colours(list(scores)).items():
        y, p = _scores(scores[source])
        if len(np.unique(y)) < 2:
            ax.plot([], [], color=colour, label=f"{source} (undefined: one class)")
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=colour, linewidth=1.5, clip_on=False, label=_labelled(source, "AUC", aucs))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="1 - specificity", ylabel="Sensitivity", title="ROC, test split (COVID positive)")
    _square(ax)
    ax.legend(**_LEGEND)
    return _png(fig)


@_styled
def pr_figure(scores: Mapping[str, Scores], aucs: Mapping[str, Interval] | None = None) -> bytes:
    """The precision-recall curves of all sources on one plot, labelled with ``aucs`` (PR AUC and interval),
    with the COVID share as the chance line."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    prevalences = []
    for source, colour in colours(list(scores)).items():
        y, p = _scores(scores[source])
        if not y.any():
            ax.plot([], [], color=colour, label=f"{source} (undefined: no COVID image)")
            continue
        precision, recall, _ = precision_recall_curve(y, p)
        label = _labelled(source, "PR AUC", aucs)
        ax.plot(recall, precision, color=colour, linewidth=1.5, drawstyle="steps-post", clip_on=False, label=label)
        prevalences.append(y.mean())
    if prevalences:
        ax.axhline(float(np.mean(prevalences)), color="grey", linestyle=":", linewidth=1, label="COVID share")
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision", title="Precision-recall, test split (COVID positive)")
    _square(ax)
    ax.legend(**_LEGEND)
    return _png(fig)


@_styled
def history_figure(
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    best_epochs: Mapping[str, int | None] | None = None,
    selection_split: str = "selection",
    columns: int = 5,
) -> bytes:
    """One small panel pair per source: loss above accuracy, training solid, the selection split dashed, the
    best epoch ringed. Every panel of a quantity shares its scale, so the sources compare at a glance.

    ``histories`` are ModelMetadata.history: train_loss, train_accuracy, select_loss, select_accuracy (a model
    trained before select_loss was recorded simply lacks that line). NaN values are gaps.
    """
    n = max(len(histories), 1)
    columns = max(1, min(columns, n))
    blocks = math.ceil(n / columns)
    fig, axes = plt.subplots(
        2 * blocks, columns, figsize=(2.1 * columns + 1.0, 3.4 * blocks + 0.6), squeeze=False, sharex=True,
        layout="constrained",
    )  # fmt: skip
    for q in (0, 1):  # a quantity's panels share their y scale
        for ax in list(axes[q::2].flat)[1:]:
            ax.sharey(axes[q, 0])
    for i, (source, colour) in enumerate(colours(list(histories)).items()):
        history, best = histories[source], (best_epochs or {}).get(source)
        block, column = divmod(i, columns)
        for q, quantity in enumerate(("loss", "accuracy")):
            ax = axes[2 * block + q, column]
            for prefix, style in (("train", "-"), ("select", "--")):
                values = np.asarray(history.get(f"{prefix}_{quantity}", []), dtype=float)
                if values.size == 0:
                    continue
                epochs = np.arange(1, values.size + 1)
                ax.plot(epochs, values, style, color=colour, linewidth=1.3, marker=".", markersize=4)
                if prefix == "select" and best and 1 <= best <= values.size:
                    ax.plot(best, values[best - 1], "o", mfc="none", mec="black", markersize=9)
            ax.set_ylabel(quantity.capitalize() if column == 0 else "")
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
            if q == 0:
                ax.set_title(source, fontsize=9)
    for i in range(len(histories), blocks * columns):
        block, column = divmod(i, columns)
        axes[2 * block, column].axis("off")
        axes[2 * block + 1, column].axis("off")
    fig.supxlabel("Epoch", fontsize=10)
    handles = [
        plt.Line2D([], [], color="black", linestyle="-", label="training split"),
        plt.Line2D([], [], color="black", linestyle="--", label=f"{selection_split} split"),
        plt.Line2D([], [], color="black", marker="o", mfc="none", linestyle="none", label="best epoch"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncols=3, frameon=False)
    return _png(fig)


@_styled
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
        ax.set_xticks([0, 1], CLASS_NAMES)
        ax.set_yticks([0, 1], CLASS_NAMES)
        ax.set_title(source, fontsize=9)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.supxlabel("Predicted", fontsize=10)
    fig.supylabel("True", fontsize=10)
    return _png(fig)


@_styled
def reliability_figure(scores: Mapping[str, Scores], bins: int = 10) -> bytes:
    """Observed COVID share against the mean predicted probability in ``bins`` equal-width bins: one point per
    filled bin, its area by the bin's count (a bin of two images is a dot, not a vertex of a line that looks
    calibrated), and below, each source's count of images per bin."""
    fig, (ax, counts) = plt.subplots(
        2, 1, figsize=(7.5, 6.4), sharex=True, height_ratios=(3, 1.2), layout="constrained"
    )
    edges = np.linspace(0, 1, bins + 1)
    for source, colour in colours(list(scores)).items():
        y, p = _scores(scores[source])
        which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)  # 1.0 falls in the last bin
        n = np.bincount(which, minlength=bins)
        filled = n > 0
        mean_p = np.bincount(which, weights=p, minlength=bins)[filled] / n[filled]
        share = np.bincount(which, weights=y, minlength=bins)[filled] / n[filled]
        ax.scatter(mean_p, share, s=12 + 180 * n[filled] / max(len(y), 1), color=colour, alpha=0.7,
                   edgecolors="white", linewidths=0.5, clip_on=False, label=source)  # fmt: skip
        counts.stairs(n, edges, color=colour, linewidth=1.3)
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="perfect calibration", zorder=0)
    ax.set(ylabel="Observed COVID share", title="Reliability, test split (point area: images in the bin)")
    _square(ax)
    ax.set_aspect("auto")
    ax.legend(**_LEGEND)
    counts.set(xlabel="Predicted COVID probability", ylabel="Images", xlim=(0, 1))
    counts.grid(alpha=0.3)
    return _png(fig)


@_styled
def forest_figure(intervals: Mapping[str, Mapping[str, Interval]], columns: int = 3) -> bytes:
    """Per metric, each source's point and 95 % interval on one row, so overlapping intervals show at a glance.

    ``intervals``: {metric: {source: (point, low, high)}}; a None point is drawn as "undefined". Every metric
    is in [0, 1], and so is every axis.
    """
    metrics = list(intervals)
    sources = list(dict.fromkeys(s for m in metrics for s in intervals[m]))
    palette = colours(sources)
    columns = max(1, min(columns, len(metrics)))
    rows = math.ceil(len(metrics) / columns) if metrics else 1
    height = 0.8 + 0.3 * max(len(sources), 1)
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.9 * columns + 2.4, height * rows), squeeze=False, sharey=True, layout="constrained"
    )
    positions = {s: len(sources) - 1 - i for i, s in enumerate(sources)}  # the first source at the top
    for ax, metric in zip(axes.flat, metrics, strict=False):
        drawn = []
        for source, (point, low, high) in intervals[metric].items():
            y, colour = positions[source], palette[source]
            if point is None or not math.isfinite(point):
                ax.text(0.5, y, "undefined", transform=ax.get_yaxis_transform(), ha="center", va="center",
                        fontsize=8, color=colour, style="italic")  # fmt: skip
                continue
            if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
                ax.plot([low, high], [y, y], color=colour, linewidth=2, clip_on=False)
                drawn.append(low)
            ax.plot(point, y, "o", color=colour, markersize=4, clip_on=False)
            drawn.append(point)
        # From a tenth below the lowest value drawn to 1: the differences show, and no axis passes 1.
        ax.set_xlim(max(0.0, math.floor(10 * min(drawn, default=0.0)) / 10 - 0.001), 1.0)
        ax.set_yticks(list(positions.values()), list(positions))
        ax.set_ylim(-0.7, len(sources) - 0.3)
        ax.set_title(METRIC_LABELS.get(metric, metric))
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    fig.suptitle("Point estimates and 95 % intervals, test split")
    return _png(fig)


@_styled
def gradcam_figure(sets: Mapping[str, GradCamSet], tile: float = 0.9) -> bytes:
    """Grad-CAM overlays with one colour bar, each beside or below its image, framed green if right and red if
    wrong, captioned in words.

    The top row shows the images common to all sources (evaluate picks the same ones for every source) once;
    each source's row has its heat maps over them, then its most confident mistakes as image and overlay.
    """
    shared = next((list(np.flatnonzero(np.array(c.kinds) == "fixed")) for c in sets.values()), [])
    first = next(iter(sets.values()), None)
    shared_ids = [first.ids[k] for k in shared] if first is not None else []
    own = {s: [k for k, i in enumerate(c.ids) if i not in shared_ids] for s, c in sets.items()}
    n_columns = max(len(shared_ids) + 2 * max((len(o) for o in own.values()), default=0), 1)
    n_rows = len(sets) + 1
    width, height = tile * n_columns + 3.3, 1.45 * tile * n_rows + 0.8
    fig = plt.figure(figsize=(width, height))
    grid = fig.add_gridspec(n_rows, n_columns, left=2.4 / width, right=1 - 0.9 / width, top=1 - 0.75 / height,
                            bottom=0.05 / height, wspace=0.06, hspace=0.75)  # fmt: skip
    overlay = None

    def tile_at(row: int, column: int, picture: np.ndarray, right: bool | None, caption: str) -> plt.Axes:
        ax = fig.add_subplot(grid[row, column])
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        if right is not None:
            for spine in ax.spines.values():
                spine.set_edgecolor("#1a9850" if right else "#d73027")
                spine.set_linewidth(2)
        ax.text(0, 1.03, caption, fontsize=8, transform=ax.transAxes, va="bottom", ha="left")
        return ax

    if first is not None:
        for column, k in enumerate(shared):
            ax = tile_at(0, column, first.images[k], None, f"truly {CLASS_NAMES[first.labels[k]]}")
            if column == 0:
                ax.set_ylabel("image", rotation=0, ha="right", va="center")
    for row, (source, cams) in enumerate(sets.items(), start=1):
        position = {i: k for k, i in enumerate(cams.ids)}
        for column, image_id in enumerate(shared_ids):
            if image_id not in position:
                continue
            k = position[image_id]
            ax = tile_at(row, column, cams.images[k], bool(cams.correct[k]),
                         f"predicted\n{CLASS_NAMES[cams.targets[k]]}, p {cams.probabilities[k]:.2f}")  # fmt: skip
            overlay = ax.imshow(cams.maps[k] / 255, cmap=HEAT_MAP, alpha=0.5, vmin=0, vmax=1)
        for j, k in enumerate(own[source]):
            right = bool(cams.correct[k])
            column = len(shared_ids) + 2 * j
            truth = f"truly {CLASS_NAMES[cams.labels[k]]}, p {cams.probabilities[k]:.2f}"
            caption = f"predicted {CLASS_NAMES[cams.targets[k]]},\n{truth}"
            tile_at(row, column, cams.images[k], right, caption)
            ax = tile_at(row, column + 1, cams.images[k], right, "")
            overlay = ax.imshow(cams.maps[k] / 255, cmap=HEAT_MAP, alpha=0.5, vmin=0, vmax=1)
        fig.text(2.3 / width, grid[row, 0].get_position(fig).y0 + 0.5 * grid[row, 0].get_position(fig).height,
                 source, ha="right", va="center", fontsize=9)  # fmt: skip
    if overlay is not None:
        bar = fig.colorbar(overlay, cax=fig.add_axes((1 - 0.75 / width, 0.3, 0.12 / width, 0.4)))
        bar.set_label("Grad-CAM, share of its peak")
    fig.suptitle(
        "Grad-CAM of the predicted class (p: COVID probability; frame green: right, red: wrong)", y=1 - 0.15 / height
    )
    return _png(fig, tight=False)


def _labelled(source: str, name: str, aucs: Mapping[str, Interval] | None) -> str:
    """``source: name 0.913 (0.720-0.989)`` from ``aucs``; the bare name where it has none."""
    point, low, high = (aucs or {}).get(source, (None, None, None))
    if point is None or not math.isfinite(point):
        return source
    interval = (
        f" ({low:.3f}-{high:.3f})" if None not in (low, high) and math.isfinite(low) and math.isfinite(high) else ""
    )
    return f"{source}: {name} {point:.3f}{interval}"


def _scores(pair: Scores) -> tuple[np.ndarray, np.ndarray]:
    y, p = pair
    return np.asarray(y).astype(int), np.asarray(p, dtype=float)


def _square(ax: plt.Axes) -> None:
    """Both axes exactly [0, 1]: lines on the edges are drawn unclipped (``clip_on=False``) by their callers."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def _png(fig: Figure, tight: bool = True) -> bytes:
    """The figure as a true-colour PNG at SCALE x DISPLAY_DPI, with no metadata, so that the same figure gives
    the same bytes (matplotlib's own writer stamps its version)."""
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=SCALE * DISPLAY_DPI, bbox_inches="tight" if tight else None,
                facecolor="white")  # fmt: skip
    plt.close(fig)
    rendered.seek(0)
    with Image.open(rendered) as image:
        rgb = image.convert("RGB")
    out = io.BytesIO()
    rgb.save(out, format="PNG", optimize=True)
    return out.getvalue()
