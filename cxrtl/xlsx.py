"""The first sheet of an Excel workbook as rows of text, and a one-sheet workbook written from rows.

The dataset's ``*.metadata.xlsx`` files are plain tables. An ``.xlsx`` file is a zip of XML parts, so the
standard library reads and writes them; a spreadsheet library would be a dependency for a dozen lines.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_REL_NS = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PACKAGE_REL_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_COLUMN = re.compile(r"([A-Z]+)")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# The release's largest sheet (Normal, 10,192 rows) is about 2 MB of XML. A part that expands past this is not
# a metadata table but a bloated or hostile file: it is refused unread. Parts within it are parsed a row at a
# time, so memory follows the rows kept, not the document.
MAX_PART_BYTES = 16 * 2**20
_CHUNK = 2**16


class SheetError(ValueError):
    """The file is not a workbook this module can read."""


def read_rows(path: Path) -> list[list[str]]:
    """The first sheet's rows, each a list of cell texts (numbers as written; empty cells as "").

    Each XML part is parsed as it is decompressed, a row at a time, and refused past :data:`MAX_PART_BYTES`.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            strings = _shared_strings(zf) if "xl/sharedStrings.xml" in names else []
            return [_row_cells(row, strings) for row in _elements(zf, _first_sheet(zf), f"{_NS}row")]
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, OSError, EOFError) as exc:
        raise SheetError(f"not a readable xlsx workbook ({type(exc).__name__}: {exc})") from None


def _elements(zf: zipfile.ZipFile, name: str, tag: str) -> Iterator[ElementTree.Element]:
    """Each complete ``tag`` element of part ``name``, parsed from the member's stream and dropped once seen."""
    # zipfile never yields more than the size the member's header states, so that size is the cap's measure.
    if zf.getinfo(name).file_size > MAX_PART_BYTES:
        raise SheetError(f"{name} expands to more than {MAX_PART_BYTES // 2**20} MiB of XML: not a metadata table")
    parser = ElementTree.XMLPullParser(events=("start", "end"))
    open_elements: list[ElementTree.Element] = []
    with zf.open(name) as member:
        while chunk := member.read(_CHUNK):
            parser.feed(chunk)
            yield from _complete(parser, open_elements, tag)
    parser.close()
    yield from _complete(parser, open_elements, tag)


def _complete(
    parser: ElementTree.XMLPullParser, open_elements: list[ElementTree.Element], tag: str
) -> Iterator[ElementTree.Element]:
    for event, element in parser.read_events():
        if event == "start":
            open_elements.append(element)
            continue
        open_elements.pop()
        if element.tag == tag:
            yield element
            if open_elements:  # the tree keeps no element already seen
                open_elements[-1].remove(element)


def _row_cells(row: ElementTree.Element, strings: list[str]) -> list[str]:
    cells: dict[int, str] = {}
    for cell in row.iter(f"{_NS}c"):
        match = _COLUMN.match(cell.get("r", ""))
        column = _column_index(match.group(1)) if match else len(cells)
        cells[column] = _cell_text(cell, strings)
    return [cells.get(i, "") for i in range(max(cells) + 1)] if cells else []


def _first_sheet(zf: zipfile.ZipFile) -> str:
    """The part name of the workbook's first sheet, as its relationships name it."""
    first = next(_elements(zf, "xl/workbook.xml", f"{_NS}sheet"), None)
    if first is None:
        raise KeyError("the workbook has no sheet")
    rel_id = first.get(f"{_REL_NS}id")
    for rel in _elements(zf, "xl/_rels/workbook.xml.rels", f"{_PACKAGE_REL_NS}Relationship"):
        if rel.get("Id") == rel_id:
            target = rel.get("Target", "").lstrip("/")
            return target if target.startswith("xl/") else f"xl/{target}"
    raise KeyError(f"no relationship {rel_id}")


def _shared_strings(zf: zipfile.ZipFile) -> list[str]:
    return [
        "".join(t.text or "" for t in item.iter(f"{_NS}t"))
        for item in _elements(zf, "xl/sharedStrings.xml", f"{_NS}si")
    ]


def _cell_text(cell: ElementTree.Element, strings: list[str]) -> str:
    kind = cell.get("t")
    if kind == "inlineStr":
        return "".join(t.text or "" for t in cell.iter(f"{_NS}t"))
    value = cell.find(f"{_NS}v")
    text = value.text or "" if value is not None else ""
    return strings[int(text)] if kind == "s" and text else text


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1


def workbook_bytes(rows: list[list[str]]) -> bytes:
    """A one-sheet workbook holding ``rows`` as inline text cells; the same bytes for the same rows."""

    def column(i: int) -> str:
        return column(i // 26 - 1) + chr(ord("A") + i % 26) if i >= 26 else chr(ord("A") + i)

    sheet_rows = "".join(
        f'<row r="{r + 1}">'
        + "".join(
            f'<c r="{column(c)}{r + 1}" t="inlineStr"><is><t>{escape(text)}</t></is></c>' for c, text in enumerate(row)
        )
        + "</row>"
        for r, row in enumerate(rows)
    )
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    package = "http://schemas.openxmlformats.org/package/2006"
    parts = {
        "[Content_Types].xml": f'<Types xmlns="{package}/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
        "_rels/.rels": f'<Relationships xmlns="{package}/relationships">'
        f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
        '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{package}/relationships">'
        f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'<worksheet xmlns="{main}"><sheetData>{sheet_rows}</sheetData></worksheet>',
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in parts.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), '<?xml version="1.0" encoding="UTF-8"?>' + text)
    return buffer.getvalue()
