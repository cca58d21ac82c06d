"""Peak memory of ``cxrtl preprocess`` when ``Normal.metadata.xlsx`` is bloated (issue 25): a measurement, not
a test (the developers' guide keeps memory figures out of timed tests).

    PYTHONPATH=$PWD:$PWD/tests/faults python tests/faults/measure_bloated_xlsx.py

Prints the peak resident set size of a preprocess whose Normal sheet expands to 192 MiB of XML (refused
unread), of one whose sheet is just under the cap (parsed a row at a time), and of one with the clean sheet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bloated import bloated_workbook

from cxrtl.demo_data import write_demo_dataset
from cxrtl.ingest import DATASET_DIR, ingest
from cxrtl.metadata import metadata_file
from cxrtl.xlsx import MAX_PART_BYTES


def peak_rss_mib(raw: Path, out: Path) -> float:
    """Peak RSS of one preprocess in a child process, from that child's own resource usage (KiB on Linux)."""
    argv = [sys.executable, "-m", "cxrtl", "preprocess", "--raw", str(raw), "--out", str(out), "--image-size", "32"]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"preprocess of {raw} failed ({child.returncode})")
    return usage.ru_maxrss / 1024


def main() -> None:
    rows = [["FILE NAME", "URL"]] + [[f"NORMAL-{i}", "https://a.example"] for i in range(1, 11)]
    cases = {"clean sheet": None, "sheet just under the cap": MAX_PART_BYTES // 2**20 - 1, "192 MiB sheet": 192}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        clean = base / "clean"
        ingest(str(write_demo_dataset(base, per_class=10, image_size=32)), clean)
        for name, mib in cases.items():
            raw = base / name.replace(" ", "-")
            shutil.copytree(clean, raw)
            if mib is not None:
                sheet = bloated_workbook(metadata_file(raw / DATASET_DIR, "Normal"), rows, mib)
                print(f"{name}: {sheet.stat().st_size / 1e3:.0f} KB on disk", end=", ")
            print(f"{name}: preprocess peak RSS {peak_rss_mib(raw, base / f'{raw.name}-out'):.0f} MiB")


if __name__ == "__main__":
    main()
