"""Hostile files that are small on disk and large once expanded, written without holding them in memory.

Shared by the fault tests and by ``measure_bloated_xlsx.py`` (the peak-memory measurement, kept out of the
timed tests by the developers' guide)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from cxrtl.xlsx import workbook_bytes

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_SHEET = "xl/worksheets/sheet1.xml"


def bloated_workbook(path: Path, rows: list[list[str]], sheet_mib: int = 192) -> Path:
    """A workbook at ``path`` whose first sheet holds ``rows`` and then repeats one row until its XML is
    ``sheet_mib`` MiB (192 MiB compresses to about 0.3 MB, as the reviewer's ``Normal.metadata.xlsx``)."""
    with zipfile.ZipFile(_bytes_file(path, workbook_bytes(rows))) as template:
        parts = {name: template.read(name) for name in template.namelist()}
    head, tail = parts.pop(_SHEET).decode().split("</sheetData>")
    filler = ('<row><c t="inlineStr"><is><t>padding</t></is></c></row>' * 1024).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
        with zf.open(_SHEET, "w", force_zip64=True) as sheet:
            sheet.write(head.encode())
            written = len(head)
            while written < sheet_mib * 2**20:
                sheet.write(filler)
                written += len(filler)
            sheet.write(f"</sheetData>{tail}".encode())
    return path


def _bytes_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
