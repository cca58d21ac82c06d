"""Synthetic inputs of every report figure for the ten sources: the figure tests' and the browser test's page."""

from __future__ import annotations

import numpy as np

from cxrtl import figures
from cxrtl.gradcam import GradCamSet
from cxrtl.weights import SOURCE_NAMES

SOURCES = list(SOURCE_NAMES)
N = 60


def synthetic_scores(seed: int = 0) -> dict[str, figures.Scores]:
    """Ten sources on one set of 60 test images (24 COVID), each a little better than the one before."""
    rng = np.random.default_rng(seed)
    y = (np.arange(N) < 24).astype(int)
    return {
        source: (y, np.clip(0.5 + (y - 0.5) * (0.2 + 0.05 * i) + rng.normal(0, 0.2, N), 0, 1))
        for i, source in enumerate(SOURCES)
    }


def synthetic_histories() -> dict[str, dict[str, list[float]]]:
    epochs = np.arange(1, 6)
    return {
        s: {
            "train_loss": list(1 / (epochs + i)),
            "train_accuracy": list(1 - 0.3 / (epochs + i)),
            "select_loss": list(1.2 / (epochs + i)),
            "select_accuracy": list(1 - 0.4 / (epochs + i)),
        }
        for i, s in enumerate(SOURCES)
    }


def synthetic_intervals() -> dict[str, dict[str, figures.Interval]]:
    return {
        metric: {s: (0.9 + 0.005 * i, 0.85 + 0.005 * i, 0.95 + 0.004 * i) for i, s in enumerate(SOURCES)}
        for metric in ("accuracy", "precision", "sensitivity", "specificity", "f1", "roc_auc", "brier")
    }


def synthetic_gradcam(source_index: int, size: int = 64) -> GradCamSet:
    """Smooth images and maps, like X-rays and upsampled heat maps (noise would not compress)."""
    k = 6 + source_index % 3  # the fixed six, then up to two mistakes
    labels = np.array([1, 1, 1, 0, 0, 0, 1, 0][:k])
    probabilities = np.where(labels == 1, 0.8, 0.2)
    probabilities[6:] = 1 - probabilities[6:]  # the mistakes
    return GradCamSet(
        ids=[f"img-{j}.png" for j in range(k)],
        labels=labels,
        probabilities=probabilities,
        threshold=0.5,
        targets=(probabilities >= 0.5).astype(int),
        kinds=["fixed"] * 6 + ["mistake"] * (k - 6),
        images=np.stack([_blob(size, size // 2, size // 2 + j, size // 3) for j in range(k)]),
        maps=np.stack([_blob(size, size // 4 + j, size // 3 + source_index, size // 6) for j in range(k)]),
    )


def _blob(size: int, row: int, column: int, width: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.round(255 * np.exp(-((yy - row) ** 2 + (xx - column) ** 2) / (2 * width**2))).astype(np.uint8)


def synthetic_confusions(scores: dict[str, figures.Scores]) -> dict[str, dict[str, int]]:
    confusions = {}
    for s, (y, p) in scores.items():
        pred = p >= 0.5
        confusions[s] = {
            "tn": int((~pred & (y == 0)).sum()),
            "fp": int((pred & (y == 0)).sum()),
            "fn": int((~pred & (y == 1)).sum()),
            "tp": int((pred & (y == 1)).sum()),
        }
    return confusions


def synthetic_training() -> tuple[dict[str, dict], dict[str, GradCamSet]]:
    """The histories and Grad-CAM sets of ``figure_sections`` for the ten sources."""
    histories = synthetic_histories()
    training = {s: {"selection_split": "val", "best_epoch": 3, "history": histories[s]} for s in SOURCES}
    return training, {s: synthetic_gradcam(i) for i, s in enumerate(SOURCES)}


def all_figures() -> dict[str, bytes]:
    """Every figure of the report, from synthetic inputs for the ten sources."""
    scores = synthetic_scores()
    return {
        "roc": figures.roc_figure(scores),
        "pr": figures.pr_figure(scores),
        "history": figures.history_figure(synthetic_histories(), {s: 3 for s in SOURCES}, "validation"),
        "confusion": figures.confusion_figure(synthetic_confusions(scores)),
        "reliability": figures.reliability_figure(scores),
        "forest": figures.forest_figure(synthetic_intervals()),
        "gradcam": figures.gradcam_figure({s: synthetic_gradcam(i) for i, s in enumerate(SOURCES)}),
    }
