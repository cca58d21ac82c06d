"""The one check of a refused command (the developers' guide's rule for bad input): a non-zero exit status,
exactly one line on stderr that starts with the program's prefix and names what is at fault, and nothing
written where the command would have written."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest

from cxrtl.cli import main as cxrtl_main

CXRTL = "cxrtl: error: "
PIPELINE = "pipeline.py: error: "


def one_error_line(
    status: int,
    err: str,
    prefix: str = CXRTL,
    *,
    expected_status: int = 2,
    naming: Iterable[str] = (),
    nothing_at: Iterable[Path] = (),
) -> str:
    """The error line, once ``status`` is ``expected_status``, ``err`` is that one line starting with
    ``prefix`` and naming each of ``naming``, and no path of ``nothing_at`` exists."""
    assert status == expected_status, f"exit {status}, not {expected_status}\n{err[-3000:]}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    line = lines[0]
    assert line.startswith(prefix), line
    for name in naming:
        assert name in line, f"{name!r} not named in: {line}"
    for path in nothing_at:
        assert not Path(path).exists(), f"{path} was written"
    return line


def refused(
    capsys: pytest.CaptureFixture[str],
    argv: Sequence[str],
    main: Callable[[Sequence[str]], int] = cxrtl_main,
    prefix: str = CXRTL,
    **checks,
) -> str:
    """Run ``main(argv)`` in this process and check its refusal with :func:`one_error_line`."""
    capsys.readouterr()
    status = main(list(argv))
    return one_error_line(status, capsys.readouterr().err, prefix, **checks)
