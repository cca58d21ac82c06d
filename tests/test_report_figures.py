"""The report's figure sections from plain inputs, and the figure files of an evaluation folder."""

from __future__ import annotations

import io

import pytest
from figure_inputs import synthetic_confusions, synthetic_intervals, synthetic_scores, synthetic_training
from PIL import Image

from cxrtl.gradcam import GRADCAM_FILE
from cxrtl.report_figures import figure_sections, read_gradcam


def figures_of(sections):
    return {s.heading: [b.alt for b in s.blocks] for s in sections}


@pytest.mark.slow
def test_all_inputs_give_every_figure_as_a_png():
    scores = synthetic_scores()
    sections = figure_sections(scores, synthetic_confusions(scores), synthetic_intervals(), *synthetic_training())
    assert figures_of(sections) == {
        "Figures": [
            "Forest plot of every metric's 95 % interval per source",
            "ROC curves of all sources",
            "Precision-recall curves",
            "Reliability diagram",
            "Confusion matrices",
        ],
        "Training": ["Training history"],
        "Where the models look": ["Grad-CAM"],
    }
    for section in sections:
        for figure in section.blocks:
            assert Image.open(io.BytesIO(figure.png)).format == "PNG"
    assert "val split" in sections[1].blocks[0].caption


def test_figures_without_inputs_are_left_out():
    untrained = {"imagenet": {"selection_split": "val", "best_epoch": None, "history": {}}}
    assert figure_sections({}, {}, {}, untrained, {}) == []
    scores = synthetic_scores()
    assert list(figures_of(figure_sections(scores, {}, {}, untrained, {}))) == ["Figures"]


def test_a_folder_gives_its_gradcam_or_none(tmp_path):
    assert read_gradcam(tmp_path) is None  # an evaluation from before evaluate wrote one
    cams = synthetic_training()[1]["imagenet"]
    cams.save(tmp_path / GRADCAM_FILE)
    assert read_gradcam(tmp_path).ids == cams.ids
