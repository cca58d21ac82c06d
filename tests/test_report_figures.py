"""The report's figure sections from plain inputs, and the figure files of an evaluation folder."""

from __future__ import annotations

import io
import json

import pytest
from figure_inputs import synthetic_confusions, synthetic_folders, synthetic_intervals, synthetic_scores
from PIL import Image

from cxrtl.errors import CxrtlError
from cxrtl.evaluate import HISTORY_FILE
from cxrtl.gradcam import GRADCAM_FILE
from cxrtl.report_figures import FolderFigures, figure_sections, read_folder


def figures_of(sections):
    return {s.heading: [b.alt for b in s.blocks] for s in sections}


def test_all_inputs_give_every_figure_as_a_png():
    scores = synthetic_scores()
    sections = figure_sections(scores, synthetic_confusions(scores), synthetic_intervals(), synthetic_folders())
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
    folders = {"imagenet": FolderFigures(None, None)}
    assert figure_sections({}, {}, {}, folders) == []
    scores = synthetic_scores()
    assert list(figures_of(figure_sections(scores, {}, {}, folders))) == ["Figures"]


def test_a_folder_gives_its_history_and_gradcam_or_none(tmp_path):
    assert read_folder(tmp_path) == FolderFigures(None, None)  # an evaluation from before these files
    folder = synthetic_folders()["imagenet"]
    (tmp_path / HISTORY_FILE).write_text(json.dumps(folder.history))
    folder.gradcam.save(tmp_path / GRADCAM_FILE)
    loaded = read_folder(tmp_path)
    assert loaded.history == folder.history and loaded.gradcam.ids == folder.gradcam.ids
    (tmp_path / HISTORY_FILE).write_text("{broken")
    with pytest.raises(CxrtlError, match=r"history\.json: damaged JSON; evaluate again$"):
        read_folder(tmp_path)
