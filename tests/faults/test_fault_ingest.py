"""Issue 14, hostile sources: symbolic links out of a folder or in a loop, zip bombs, size and file-count
limits, a damaged deflate stream; nothing is left behind after a refusal."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest
from refusal import refused

from cxrtl.demo_data import write_demo_dataset
from cxrtl.ingest import DATASET_DIR

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def demo_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo"), per_class=3, image_size=32)


@pytest.fixture
def folder(demo_zip: Path, tmp_path: Path) -> Path:
    with zipfile.ZipFile(demo_zip) as zf:
        zf.extractall(tmp_path / "src")
    return tmp_path / "src" / DATASET_DIR


def _refused_ingest(capsys, source: Path, tmp_path: Path, *options: str, naming=()) -> str:
    out = tmp_path / "parent" / "raw"
    out.parent.mkdir(exist_ok=True)
    line = refused(capsys, ["ingest", "--source", str(source), "--out", str(out), *options], naming=naming)
    assert not out.exists() and not list(out.parent.iterdir()), "partial output left behind"
    return line


def test_a_symlink_out_of_the_folder_is_refused(folder, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the dataset")
    link = folder / "COVID" / "images" / "COVID-99.png"
    link.symlink_to(secret)
    _refused_ingest(capsys, folder, tmp_path, naming=(str(link), "leads out of the folder"))


def test_a_symlink_loop_is_refused(folder, tmp_path, capsys):
    loop = folder / "Normal" / "images" / "again"
    loop.symlink_to(folder, target_is_directory=True)
    _refused_ingest(capsys, folder, tmp_path, naming=(str(loop), "symbolic link to a folder"))


def test_a_symlink_to_a_file_inside_is_copied_as_the_file(folder, tmp_path):
    from cxrtl.ingest import ingest

    images = folder / "COVID" / "images"
    (images / "COVID-4.png").symlink_to(images / "COVID-1.png")
    result = ingest(str(folder), tmp_path / "raw")
    copied = tmp_path / "raw" / DATASET_DIR / "COVID" / "images" / "COVID-4.png"
    assert not copied.is_symlink() and copied.read_bytes() == (images / "COVID-1.png").read_bytes()
    assert result.counts["COVID"] == 4


def test_a_zip_bomb_is_refused(tmp_path, capsys):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{DATASET_DIR}/COVID/images/COVID-1.png", b"\0" * (16 << 20))
    assert bomb.stat().st_size < 100_000
    _refused_ingest(capsys, bomb, tmp_path, naming=("COVID-1.png", "zip bomb", "--max-ratio"))


@pytest.mark.parametrize(
    ("option", "value", "named"), [("--max-bytes", "10000", "bytes unpacked"), ("--max-files", "5", "files")]
)
def test_archive_limits_are_enforced_and_overridable(demo_zip, tmp_path, capsys, option, value, named):
    _refused_ingest(capsys, demo_zip, tmp_path, option, value, naming=(demo_zip.name, named, option))


def test_folder_limits_are_enforced(folder, tmp_path, capsys):
    _refused_ingest(capsys, folder, tmp_path, "--max-files", "5", naming=("--max-files",))


def test_a_damaged_deflate_stream_is_one_line(tmp_path, capsys):
    archive = tmp_path / "damaged.zip"
    data = os.urandom(4096) * 16  # deflates, so the damage lands in a compressed stream
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{DATASET_DIR}/COVID/images/COVID-1.png", data)
    raw = bytearray(archive.read_bytes())
    start = 30 + len(f"{DATASET_DIR}/COVID/images/COVID-1.png")  # after the local header
    raw[start + 10 : start + 60] = b"\xff" * 50
    archive.write_bytes(bytes(raw))
    _refused_ingest(capsys, archive, tmp_path, naming=(archive.name, "not a readable zip file"))


def test_the_limits_themselves_are_checked(demo_zip, tmp_path, capsys):
    _refused_ingest(capsys, demo_zip, tmp_path, "--max-ratio", "inf", naming=("--max-ratio",))
    shutil.rmtree(tmp_path / "parent")
