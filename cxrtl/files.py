"""Writing outputs all or nothing."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cxrtl.errors import CxrtlError


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` that replaces it when the block succeeds; removed otherwise.

    Its name ends in ``.part``, so a reader never takes it for a finished file. The file gets the mode any
    new file gets (0666 less the umask), not mkstemp's 0600, so that the finished file is as readable as
    one written in place (by the invoking user, say, when a task's container wrote it as another).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.part"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def check_output_folder(out: Path, marker: str) -> None:
    """Refuse ``out`` unless it is missing, empty, or an earlier output of the same step (it holds ``marker``)."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / marker).is_file())):
        raise CxrtlError(f"{out} exists and is not an earlier output of this step; give a new or empty folder")


@contextlib.contextmanager
def staged_folder(out: Path, marker: str) -> Iterator[Path]:
    """Yield an empty folder that replaces ``out`` when the block succeeds; on error ``out`` is untouched.

    The staging folder sits next to ``out`` (so the final move is a rename) and its parent is scratch
    space private to the caller. ``out`` may be missing, empty, or an earlier output (it holds ``marker``);
    anything else is refused rather than overwritten.
    """
    out = Path(out)
    check_output_folder(out, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        staged = work / "result"
        staged.mkdir()
        yield staged
        if out.exists():
            os.replace(out, work / "previous")
        os.replace(staged, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
