"""Writing outputs all or nothing."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cxrtl.errors import CxrtlError

# The writes that fail for want of a writable disk, not for a bug: each is one line naming the path.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
# torch.save's writer reports a full disk as a RuntimeError ("unexpected pos"); with less than this free, one is
# taken for a full disk.
_FULL_BYTES = 2**20


class DiskError(CxrtlError):
    """A write failed because the disk is full or read-only."""


def disk_problem(exc: BaseException) -> str | None:
    """ "no space left on device" (or the like) when ``exc`` is a write refused for want of a writable disk."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return os.strerror(exc.errno).lower()
    return None


@contextlib.contextmanager
def writing(what: str, path: Path) -> Iterator[None]:
    """Turn a full or read-only disk while writing ``what`` at ``path`` into a :class:`DiskError` naming both.

    Put it right around the write, inside any clean-up that frees the space (a full disk is told apart from
    torch's other RuntimeErrors by the space left)."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        problem = disk_problem(exc) or (_full(path) if isinstance(exc, RuntimeError) else None)
        if problem is None:
            raise
        raise DiskError(f"{path}: {problem} while writing {what}") from None


def _full(path: Path) -> str | None:
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    stats = os.statvfs(existing)
    return os.strerror(errno.ENOSPC).lower() if stats.f_bavail * stats.f_frsize < _FULL_BYTES else None


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
