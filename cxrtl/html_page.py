"""A self-contained report page: HTML with inline CSS and figures as data: URIs, and the same page in Markdown.

Nothing on the page can leave the file: no scripts, fonts or external files, and a Content-Security-Policy
that allows only the inline style and data: images, so that a link slipped into a note could not load either.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

# The characters of Markdown the KFP UI shows (its MarkdownViewer's MAX_MARKDOWN_STR_LENGTH); it cuts the rest.
EMBEDDED_LIMIT = 400_000
# The first element of <head>, so that it governs everything after it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1em 2em; color: #222; max-width: 84em; }
h1 { font-size: 1.5em; margin: .3em 0; }
.banner { border: 3px solid #b00020; background: #fdecea; color: #5f0010; padding: .4em .8em; margin: .5em 0; }
.banner p { margin: .2em 0; font-weight: bold; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .1em 1em; margin: .5em 0; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; }
nav ul { columns: 3; margin: .3em 0; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0; display: block; overflow-x: auto; max-width: 100%; }
caption { text-align: left; font-style: italic; padding-bottom: .3em; }
th, td { padding: .3em .6em; border-bottom: 1px solid #ddd; text-align: right; }
th { vertical-align: bottom; }
td:first-child { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.best { background: #e6f4ea; font-weight: bold; }
tr.tied { background: #f1f8f3; }
tr.muted { color: #888; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: .9em; color: #555; }
"""


@dataclass(frozen=True)
class Link:
    """A table cell that links to ``href`` (relative to the page, so a folder of them can move)."""

    text: str
    href: str


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str | Link]]
    row_classes: Sequence[str | None] | None = None  # CSS class per row (STYLE has best, tied, muted)
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    png: bytes
    alt: str
    caption: str = ""
    width: int | None = None  # CSS pixels it is shown at (narrower windows shrink it); None: the PNG's own

    @property
    def uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    def embedded(self) -> str:
        """A data: URI of a small copy: at its display width and in 256 colours, a sixth of the size or less, for
        a Markdown file that must carry its figures within :data:`EMBEDDED_LIMIT`."""
        with Image.open(io.BytesIO(self.png)) as image:
            if self.width and self.width < image.width:
                image = image.resize((self.width, round(image.height * self.width / image.width)), Image.LANCZOS)
            small = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        out = io.BytesIO()
        small.save(out, format="PNG", optimize=True)
        return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")

    @property
    def file_name(self) -> str:
        """The figure's file name where Markdown links it (from its alt text, which is unique on a page)."""
        return f"{_anchor(self.alt)}.png"


@dataclass(frozen=True)
class Notes:
    items: Sequence[str]


@dataclass(frozen=True)
class Banner:
    """Warnings no reader may miss: first on the page, each line in bold in a red box."""

    lines: Sequence[str]


@dataclass(frozen=True)
class Facts:
    """Named facts (provenance), one per line."""

    items: Sequence[tuple[str, str]]


Block = str | Table | Figure | Notes | Banner | Facts  # a str is a paragraph


@dataclass(frozen=True)
class Section:
    heading: str
    blocks: Sequence[Block]


@dataclass(frozen=True)
class Page:
    title: str
    sections: Sequence[Section]
    intro: Sequence[Block] = ()  # before the first section

    def html(self) -> str:
        parts = [
            "<!doctype html>",
            '<html lang="en"><head>',
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
            '<meta charset="utf-8">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>{_e(self.title)}</title>",
            f"<style>{STYLE}</style>",
            "</head><body>",
            f"<h1>{_e(self.title)}</h1>",
            *(_html_block(b) for b in self.intro),
            '<nav id="contents"><strong>Contents</strong><ul>'
            + "".join(f'<li><a href="#{_anchor(s.heading)}">{_e(s.heading)}</a></li>' for s in self.sections)
            + "</ul></nav>",
        ]
        for section in self.sections:
            parts.append(f'<section id="{_anchor(section.heading)}"><h2>{_e(section.heading)}</h2>')
            parts.extend(_html_block(b) for b in section.blocks)
            parts.append("</section>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

    def markdown(self, figures_folder: str | None = None) -> str:
        """The page in Markdown; a row with a CSS class is written in bold. Figures link to
        ``figures_folder/<Figure.file_name>`` (relative to the Markdown file, which code-hosting sites render,
        unlike megabytes of data: URIs). With no folder, for a viewer that shows one file alone, they are
        embedded as small copies (:meth:`Figure.embedded`), in page order while the whole stays within
        :data:`EMBEDDED_LIMIT`; a figure past it is named, for the HTML page."""
        if figures_folder is None:
            budget = EMBEDDED_LIMIT - len(self._markdown(lambda figure: _figure_markdown(figure, None)))
            embedded: dict[int, str] = {}
            for figure in self.figures():
                uri = figure.embedded()
                if len(uri) <= budget:
                    embedded[id(figure)], budget = uri, budget - len(uri)
            return self._markdown(lambda figure: _figure_markdown(figure, embedded.get(id(figure))))
        return self._markdown(lambda figure: _figure_markdown(figure, f"{figures_folder}/{figure.file_name}"))

    def _markdown(self, figure_markdown: Callable[[Figure], str]) -> str:
        parts = [f"# {_md(self.title)}", *(_markdown_block(b, figure_markdown) for b in self.intro)]
        parts.append("\n".join(f"- [{_md(s.heading)}](#{_anchor(s.heading)})" for s in self.sections))
        for section in self.sections:
            parts.append(f"## {_md(section.heading)}")
            parts.extend(_markdown_block(b, figure_markdown) for b in section.blocks)
        return "\n\n".join(parts) + "\n"

    def figures(self) -> list[Figure]:
        """Every figure on the page, in order."""
        blocks = [*self.intro, *(b for s in self.sections for b in s.blocks)]
        return [b for b in blocks if isinstance(b, Figure)]


def _anchor(heading: str) -> str:
    """The heading's anchor as GitHub makes it: lower case, spaces to hyphens, other punctuation dropped."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html_block(block: Block) -> str:
    if isinstance(block, str):
        return f"<p>{_e(block)}</p>"
    if isinstance(block, Notes):
        return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Banner):
        return (
            '<div class="banner" id="banner" role="alert">' + "".join(f"<p>{_e(x)}</p>" for x in block.lines) + "</div>"
        )
    if isinstance(block, Facts):
        items = "".join(f"<dt>{_e(name)}</dt><dd>{_e(value)}</dd>" for name, value in block.items)
        return f'<dl class="facts" id="provenance">{items}</dl>'
    if isinstance(block, Figure):
        caption = f"<figcaption>{_e(block.caption)}</figcaption>" if block.caption else ""
        width = f' width="{block.width}"' if block.width else ""
        return f'<figure><img alt="{_e(block.alt)}"{width} src="{block.uri}">{caption}</figure>'
    classes = block.row_classes or [None] * len(block.rows)
    rows = []
    for cells, css in zip(block.rows, classes, strict=True):
        attribute = f' class="{_e(css)}"' if css else ""
        rows.append(f"<tr{attribute}>" + "".join(f"<td>{_html_cell(c)}</td>" for c in cells) + "</tr>")
    caption = f"<caption>{_e(block.caption)}</caption>" if block.caption else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in block.header)
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_cell(cell: str | Link) -> str:
    return f'<a href="{_e(cell.href)}">{_e(cell.text)}</a>' if isinstance(cell, Link) else _e(cell)


def _md_cell(cell: str | Link) -> str:
    return f"[{_md(cell.text)}](<{cell.href}>)" if isinstance(cell, Link) else _md(cell)


def _md(text: str) -> str:
    """Text that Markdown shows as written: its markup characters escaped, no line breaks."""
    out = " ".join(str(text).split())
    for char in "\\`*_[]<>|":
        out = out.replace(char, "\\" + char)
    return out


def _figure_markdown(figure: Figure, target: str | None) -> str:
    """The figure's image (none where ``target`` is None: a line sends the reader to the HTML page) and caption."""
    if target is None:
        image = f'*Figure "{_md(figure.alt)}": in the HTML report (too large to embed here).*'
    else:
        image = f"![{_md(figure.alt)}]({target})"
    return f"{image}\n\n*{_md(figure.caption)}*" if figure.caption else image


def _markdown_block(block: Block, figure_markdown: Callable[[Figure], str]) -> str:
    if isinstance(block, str):
        return _md(block)
    if isinstance(block, Notes):
        return "\n".join(f"- {_md(item)}" for item in block.items)
    if isinstance(block, Banner):
        return "\n>\n".join(f"> **{_md(line)}**" for line in block.lines)
    if isinstance(block, Facts):
        return "\n".join(f"- **{_md(name)}**: {_md(value)}" for name, value in block.items)
    if isinstance(block, Figure):
        return figure_markdown(block)
    classes = block.row_classes or [None] * len(block.rows)
    lines = [f"*{_md(block.caption)}*", ""] if block.caption else []
    lines += ["| " + " | ".join(_md(h) for h in block.header) + " |", "|" + "---|" * len(block.header)]
    for cells, css in zip(block.rows, classes, strict=True):
        shown = [f"**{_md_cell(c)}**" if css and _md_cell(c) else _md_cell(c) for c in cells]
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines)
