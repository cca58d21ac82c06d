"""The report page in a real headless browser (Debian's chromium, no network): every figure shows, nothing leaves.

`make test` installs chromium where it can (as root, with apt, as on CI); elsewhere these tests are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
from browser import chromium, load, screenshot
from figure_inputs import (
    SOURCES,
    synthetic_confusions,
    synthetic_intervals,
    synthetic_scores,
    synthetic_training,
)
from PIL import Image

from cxrtl import figures
from cxrtl.html_page import Notes, Page, Section, Table
from cxrtl.report_figures import figure_sections

pytestmark = [
    pytest.mark.skipif(
        chromium() is None, reason="chromium is not installed (as root, `make test` installs it with apt)"
    ),
    pytest.mark.slow,  # a browser per page
]

BAD_DATA_URI = '<img alt="bad" src="data:image/png;base64,AAAA">'
EXTERNAL = '<img alt="external" src="https://example.com/figure.png">'


@pytest.fixture(scope="module")
def page() -> str:
    """A report page with every figure (cxrtl.report_figures), of synthetic predictions for the ten sources."""
    scores = synthetic_scores()
    figures = figure_sections(scores, synthetic_confusions(scores), synthetic_intervals(), *synthetic_training())
    rows = [[s, f"0.{90 + i}", "0.85-0.95"] for i, s in enumerate(SOURCES)]
    table = Table(["Source", "Accuracy", "95% CI"], rows, ["best", "tied", *[None] * (len(rows) - 2)])
    return Page(
        "Weight sources compared",
        [
            Section("Results", [table, Notes(["A note with <angle brackets> & an ampersand."])]),
            *figures,
        ],
        intro=["Synthetic predictions, for the browser test."],
    ).html()


def test_every_figure_loads_and_no_request_leaves_the_page(page):
    loaded = load(page)
    assert len(loaded.images) == 7  # forest, ROC, PR, reliability, confusion, history, Grad-CAM
    assert loaded.broken == []
    assert loaded.requests == [] and loaded.refused == []


def test_a_broken_data_uri_is_caught(page):
    loaded = load(page.replace("</body>", BAD_DATA_URI + "</body>"))
    assert loaded.broken == ["data:image/png;base64,AAAA"]


def test_an_external_image_is_caught_as_a_request_refused_by_the_policy(page):
    loaded = load(page.replace("</body>", EXTERNAL + "</body>"))
    assert loaded.broken == ["https://example.com/figure.png"]
    assert loaded.refused == ["https://example.com/figure.png"]
    assert loaded.requests == ["https://example.com/figure.png"]


def test_without_the_policy_an_external_stylesheet_is_still_caught_as_a_request(page):
    unguarded = page.replace('http-equiv="Content-Security-Policy"', 'name="no-policy"')
    unguarded = unguarded.replace("</head>", '<link rel="stylesheet" href="http://example.com/s.css"></head>')
    loaded = load(unguarded)
    assert loaded.requests == ["http://example.com/s.css"] and loaded.refused == []


def test_screenshot_is_a_png_of_the_window(page, tmp_path):
    (tmp_path / "report.html").write_text(page)
    shot = screenshot(tmp_path / "report.html", tmp_path / "shot.png", width=900, height=700)
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (900, 700)
        assert len(np.unique(np.asarray(image.convert("L")))) > 10  # something was drawn, not a blank window


@pytest.fixture(scope="module")
def demo_like_report() -> str:
    """A whole report like the demo's: ten sources, nine of them stand-ins, 23 test images (12 COVID here)."""
    from test_report import _evaluation

    from cxrtl.report import build_report
    from cxrtl.weights import SOURCE_NAMES

    return build_report([_evaluation(s, 12 + i, n=23, stand_in=s != "moco-v1") for i, s in enumerate(SOURCE_NAMES)])


@pytest.mark.parametrize("width", [1400, 800])
def test_the_banner_and_provenance_are_in_the_first_screen(demo_like_report, width):
    layout = load(demo_like_report.html(), width=width, height=900).layout
    # Some headless Chromium builds take the window's frame off the 900 px: the first screen is what it shows.
    shown_width, shown_height = layout["window"]
    assert shown_width == width and 700 <= shown_height <= 900, layout
    assert 0 < layout["bottoms"]["banner"] < layout["bottoms"]["provenance"] <= shown_height, layout


def test_the_first_table_fits_1400_px_with_its_weights_column(demo_like_report):
    layout = load(demo_like_report.html(), width=1400, height=900).layout
    table = layout["firstTable"]
    assert table["scrollWidth"] <= table["clientWidth"], layout  # no sideways scroll inside the table
    assert layout["pageWidth"] <= 1400 and table["lastHeaderRight"] <= 1400, layout
    assert demo_like_report.summary_table()[0][2] == "Weights"


@pytest.mark.parametrize("width", [1400, 800])
def test_the_page_never_scrolls_sideways(demo_like_report, width):
    # A wide table scrolls inside itself, a figure shrinks to the window: the page keeps the window's width.
    layout = load(demo_like_report.html(), width=width, height=900).layout
    assert layout["pageWidth"] <= width, layout


def test_every_figure_shows_at_the_width_it_was_drawn_for_at_1400_px(demo_like_report):
    # Its text is then at the sizes cxrtl.figures sets (10 pt, none below 8 pt: 11 px and more on the page).
    images = load(demo_like_report.html(), width=1400, height=900).images
    assert len(images) == 6  # forest, ROC, PR, reliability, confusion, history (no Grad-CAM in this report)
    for image in images:
        assert image["shown"] == image["width"] // figures.SCALE, image
