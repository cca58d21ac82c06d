"""A self-contained report page: HTML with inline CSS and figures as data: URIs, and the same page in Markdown.

Nothing on the page can leave the file: no scripts, fonts or external files, and a Content-Security-Policy
that allows only the inline style and data: images, so that a link slipped into a note could not load either.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

# The first element of <head>, so that it governs everything after it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 80em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0; display: block; overflow-x: auto; max-width: 100%; }
caption { text-align: left; font-style: italic; padding-bottom: .3em; }
th, td { padding: .3em .6em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.best { background: #e6f4ea; font-weight: bold; }
tr.tied { background: #f1f8f3; }
tr.muted { color: #888; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: .9em; color: #555; }
"""


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    row_classes: Sequence[str | None] | None = None  # CSS class per row (STYLE has best, tied, muted)
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    png: bytes
    alt: str
    caption: str = ""

    @property
    def uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class Notes:
    items: Sequence[str]


Block = str | Table | Figure | Notes  # a str is a paragraph


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
        ]
        for section in self.sections:
            parts.append(f"<section><h2>{_e(section.heading)}</h2>")
            parts.extend(_html_block(b) for b in section.blocks)
            parts.append("</section>")
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"

    def markdown(self) -> str:
        """The page in Markdown (figures as data: URIs too); a row with a CSS class is written in bold."""
        parts = [f"# {_md(self.title)}", *(_markdown_block(b) for b in self.intro)]
        for section in self.sections:
            parts.append(f"## {_md(section.heading)}")
            parts.extend(_markdown_block(b) for b in section.blocks)
        return "\n\n".join(parts) + "\n"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html_block(block: Block) -> str:
    if isinstance(block, str):
        return f"<p>{_e(block)}</p>"
    if isinstance(block, Notes):
        return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Figure):
        caption = f"<figcaption>{_e(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure><img alt="{_e(block.alt)}" src="{block.uri}">{caption}</figure>'
    classes = block.row_classes or [None] * len(block.rows)
    rows = []
    for cells, css in zip(block.rows, classes, strict=True):
        attribute = f' class="{_e(css)}"' if css else ""
        rows.append(f"<tr{attribute}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    caption = f"<caption>{_e(block.caption)}</caption>" if block.caption else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in block.header)
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _md(text: str) -> str:
    """Text that Markdown shows as written: its markup characters escaped, no line breaks."""
    out = " ".join(str(text).split())
    for char in "\\`*_[]<>|":
        out = out.replace(char, "\\" + char)
    return out


def _markdown_block(block: Block) -> str:
    if isinstance(block, str):
        return _md(block)
    if isinstance(block, Notes):
        return "\n".join(f"- {_md(item)}" for item in block.items)
    if isinstance(block, Figure):
        image = f"![{_md(block.alt)}]({block.uri})"
        return f"{image}\n\n*{_md(block.caption)}*" if block.caption else image
    classes = block.row_classes or [None] * len(block.rows)
    lines = [f"*{_md(block.caption)}*", ""] if block.caption else []
    lines += ["| " + " | ".join(_md(h) for h in block.header) + " |", "|" + "---|" * len(block.header)]
    for cells, css in zip(block.rows, classes, strict=True):
        shown = [f"**{_md(c)}**" if css and _md(c) else _md(c) for c in cells]
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines)
