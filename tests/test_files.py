"""cxrtl.files.atomic_file: all or nothing, and the finished file as readable as one written in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxrtl.files import atomic_file


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_finished_file_has_the_mode_of_a_file_written_in_place(tmp_path: Path, umask_022):
    (tmp_path / "plain").write_bytes(b"x")
    with atomic_file(tmp_path / "atomic") as part:
        part.write_bytes(b"x")
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == 0o644


def test_a_failed_block_leaves_neither_the_target_nor_the_part(tmp_path: Path):
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "target") as part:
        part.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
