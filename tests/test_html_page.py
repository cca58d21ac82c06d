"""The self-contained page builder: the policy first, text escaped, figures embedded, the same page in Markdown."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from cxrtl.html_page import CONTENT_SECURITY_POLICY, EMBEDDED_LIMIT, Figure, Notes, Page, Section, Table


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A true-colour PNG of noise (which does not compress)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


PNG = png(8, 6)
PAGE = Page(
    "Sources <compared>",
    [
        Section(
            "Results",
            [
                Table(["Source", "F1 | AUC"], [["moco-v2", "0.9"], ["imagenet", "-"]], ["best", None], "All *ten*."),
                Notes(["x < y & z", "a [link](http://example.com)"]),
            ],
        ),
        Section("Figures", [Figure(PNG, 'ROC "curves"', "Caption.")]),
    ],
    intro=["First paragraph."],
)


def test_the_policy_is_the_first_thing_in_head_and_allows_only_inline_style_and_data_images():
    text = PAGE.html()
    head = text[text.index("<head>") + len("<head>") :].lstrip()
    assert head.startswith(f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">')
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives == {
        "default-src": "'none'",
        "style-src": "'unsafe-inline'",
        "img-src": "data:",
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    assert "<script" not in text and "<link" not in text
    assert all(url.startswith("data:image/png;base64,") for url in re.findall(r'src="([^"]*)"', text))
    # Links only within the page (the table of contents) or relative to it (artefacts beside the report).
    assert all("://" not in url and not url.startswith("/") for url in re.findall(r'href="([^"]*)"', text))


def test_html_escapes_text_embeds_figures_and_marks_rows():
    text = PAGE.html()
    assert "<title>Sources &lt;compared&gt;</title>" in text
    assert "<li>x &lt; y &amp; z</li>" in text
    assert '<tr class="best"><td>moco-v2</td><td>0.9</td></tr><tr><td>imagenet</td>' in text
    sources = re.findall(r'<img alt="ROC &quot;curves&quot;" src="([^"]+)">', text)
    assert sources == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
    assert "<figcaption>Caption.</figcaption>" in text and "<caption>All *ten*.</caption>" in text


def test_markdown_has_the_same_content_escaped_with_the_figure_embedded():
    text = PAGE.markdown()
    contents = "- [Results](#results)\n- [Figures](#figures)"
    assert text.startswith(
        f"# Sources \\<compared\\>\n\nFirst paragraph.\n\n{contents}\n\n## Results\n\n*All \\*ten\\*.*\n\n"
    )
    assert "| Source | F1 \\| AUC |\n|---|---|\n| **moco-v2** | **0.9** |\n| imagenet | - |" in text
    assert "- x \\< y & z\n- a \\[link\\](http://example.com)" in text
    [figure] = PAGE.figures()
    assert f'![ROC "curves"]({figure.embedded()})\n\n*Caption.*' in text


def test_an_embedded_figure_is_a_small_copy_at_its_display_width():
    figure = Figure(png(400, 300), "Noise", width=200)
    with Image.open(io.BytesIO(base64.b64decode(figure.embedded().split(",", 1)[1]))) as copy:
        assert copy.size == (200, 150) and copy.mode == "P"


def test_embedded_markdown_stays_within_what_the_kfp_ui_shows_and_names_the_figures_left_out():
    # Each of these is about 127,000 characters embedded: three fit in 400,000 with the text, the fourth not.
    figures = [Figure(png(560, 170, seed), f"Noise {seed}", "Its caption.") for seed in range(4)]
    page = Page("Big", [Section("Figures", figures)])
    text = page.markdown()
    assert len(text) <= EMBEDDED_LIMIT
    assert text.count("data:image/png;base64,") == 3
    assert '*Figure "Noise 3": in the HTML report (too large to embed here).*\n\n*Its caption.*' in text


def test_markdown_links_figures_as_files_in_the_folder_given():
    [figure] = PAGE.figures()
    assert figure.file_name == "roc-curves.png"
    text = PAGE.markdown("figures")
    assert '![ROC "curves"](figures/roc-curves.png)\n\n*Caption.*' in text and "data:" not in text
