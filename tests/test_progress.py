"""cxrtl.progress: a bar on a terminal, a plain line at each tenth elsewhere (KFP pods, log files)."""

from __future__ import annotations

import io
import logging

import pytest

from cxrtl.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_it_logs_a_line_at_each_tenth(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    with Progress(25, "decoding", logging.getLogger("test")) as progress:
        for _ in range(25):
            progress.update()
    lines = [record.getMessage() for record in caplog.records]
    # The first image count at or past each tenth, and the share it is.
    done = [3, 5, 8, 10, 13, 15, 18, 20, 23, 25]
    assert lines == [f"decoding: {n} of 25 images ({4 * n}%)" for n in done]


def test_bytes_are_shown_in_megabytes_and_a_large_step_is_one_line(caplog):
    caplog.set_level(logging.INFO)
    with Progress(4_000_000, "x: downloaded", logging.getLogger("test"), unit="B") as progress:
        progress.update(2_500_000)
        progress.update(100_000)
        progress.update(1_400_000)
    assert [r.getMessage() for r in caplog.records] == [
        "x: downloaded: 2.5 of 4.0 MB (62%)",
        "x: downloaded: 4.0 of 4.0 MB (100%)",
    ]


def test_a_total_below_the_limit_shows_nothing(caplog):
    caplog.set_level(logging.INFO)
    with Progress(1000, "x", logging.getLogger("test"), unit="B", shown_from=1001) as progress:
        progress.update(1000)
    assert caplog.records == []


def test_an_unknown_total_logs_nothing(caplog):
    caplog.set_level(logging.INFO)
    with Progress(None, "x", logging.getLogger("test")) as progress:
        progress.update(100)
    assert caplog.records == []


def test_on_a_terminal_it_draws_a_bar_and_logs_nothing(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    with Progress(10, "decoding", logging.getLogger("test")) as progress:
        progress.update(10)
    assert "decoding:   0%|" in terminal.getvalue() and "0/10 [" in terminal.getvalue()
    assert caplog.records == []
