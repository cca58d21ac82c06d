"""The report's figures: valid PNGs for ten sources, the same bytes every time, and undefined cases drawn, not fatal."""

from __future__ import annotations

import io

import numpy as np
import pytest
from figure_inputs import SOURCES, all_figures, synthetic_gradcam, synthetic_histories, synthetic_scores
from PIL import Image

from cxrtl import figures


def open_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.verify()  # a truncated or corrupt PNG raises here
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


@pytest.mark.slow
def test_ten_sources_give_true_colour_pngs_at_twice_a_page_width_with_distinct_colours():
    assert len(SOURCES) == 10
    for name, png in all_figures().items():
        image = open_png(png)
        assert image.mode == "RGB", (name, image.mode)  # true colour, not a 256-colour palette
        width, height = image.size
        # Drawn for at most 1,300 page pixels (a 1,400 px window), at twice that for sharp text.
        assert figures.display_width(png) == width // figures.SCALE
        assert 200 < width // figures.SCALE <= 1300 and height > 200, (name, image.size)
        # Grad-CAM's tiles are photographs: ten sources' of them take a couple of megabytes.
        assert len(png) < (2_500_000 if name == "gradcam" else 400_000), (name, len(png))
    assert len(set(figures.colours(SOURCES).values())) == 10


def test_the_legend_gives_each_sources_auc_and_interval():
    scores = dict(list(synthetic_scores().items())[:2])
    with_aucs = figures.roc_figure(scores, {s: (0.9, 0.8, 0.95) for s in scores})
    assert with_aucs != figures.roc_figure(scores)
    assert figures._labelled("moco-v2", "AUC", {"moco-v2": (0.9, 0.8, 0.95)}) == "moco-v2: AUC 0.900 (0.800-0.950)"
    assert figures._labelled("moco-v2", "PR AUC", {"moco-v2": (0.9, float("nan"), float("nan"))}) == (
        "moco-v2: PR AUC 0.900"
    )


@pytest.mark.slow
def test_figures_are_deterministic():
    assert all_figures() == all_figures()


@pytest.mark.slow
def test_one_class_and_undefined_metrics_are_drawn_not_fatal():
    only_normal = {s: (np.zeros(10, dtype=int), np.linspace(0, 1, 10)) for s in SOURCES[:3]}
    only_covid = {s: (np.ones(10, dtype=int), np.linspace(0, 1, 10)) for s in SOURCES[3:5]}
    for scores in (only_normal, only_covid, {**only_normal, **synthetic_scores()}):
        for figure in (figures.roc_figure, figures.pr_figure, figures.reliability_figure):
            open_png(figure(scores))
    undefined = {"precision": {"imagenet": (None, None, None), "moco-v2": (0.7, 0.6, 0.8)}, "roc_auc": {}}
    undefined["roc_auc"]["imagenet"] = (float("nan"), float("nan"), float("nan"))
    undefined["roc_auc"]["moco-v2"] = (0.9, None, None)  # a point without an interval
    open_png(figures.forest_figure(undefined))
    open_png(figures.confusion_figure({"imagenet": {"tn": 0, "fp": 0, "fn": 0, "tp": 5}}))


@pytest.mark.slow
def test_history_without_selection_loss_plots_what_there_is():
    old = {s: {k: v for k, v in h.items() if k != "select_loss"} for s, h in synthetic_histories().items()}
    old["imagenet"]["train_loss"][1] = float("nan")
    assert open_png(figures.history_figure(old)) is not None


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 10])
def test_gradcam_grid_fits_any_number_of_sources(count):
    sets = {s: synthetic_gradcam(i) for i, s in enumerate(SOURCES[:count])}
    _, height = open_png(figures.gradcam_figure(sets)).size
    assert height > 50 * count


def test_forest_figure_puts_undefined_text_where_a_point_would_be():
    # With the point drawn the row's pixels change; "undefined" text changes them otherwise: the figure
    # of a defined point must differ from that of an undefined one.
    defined = figures.forest_figure({"f1": {"a": (0.5, 0.4, 0.6), "b": (0.7, 0.6, 0.8)}})
    missing = figures.forest_figure({"f1": {"a": (None, None, None), "b": (0.7, 0.6, 0.8)}})
    assert defined != missing
