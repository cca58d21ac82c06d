"""Progress of a long step: a bar where a person watches a terminal, a plain line at each tenth elsewhere.

KFP pods and log files are no terminal: a bar's carriage returns would garble them, so there progress is
an INFO line of the caller's logger each time another 10 % is done.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType

from tqdm import tqdm


class Progress:
    """``with Progress(total, "imagenet: downloading", logger, unit="B") as p: ... p.update(n)``.

    ``unit="B"`` shows byte counts in kB, MB, GB. ``total`` None (unknown): a bar without an end, and no lines.
    A ``total`` below ``shown_from`` shows nothing: a step that quick needs no progress.
    """

    def __init__(
        self, total: int | None, label: str, logger: logging.Logger, unit: str = "images", shown_from: int = 0
    ) -> None:
        self.total, self.label, self.logger, self.unit = total, label, logger, unit
        self.done = 0
        self._next_tenth = 1
        self._silent = total is not None and total < shown_from
        self._bar = (
            tqdm(total=total, desc=label, unit=unit, unit_scale=unit == "B", leave=False, file=sys.stderr)
            if sys.stderr.isatty() and not self._silent
            else None
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.total and not self._silent and self.done * 10 >= self._next_tenth * self.total:
            # One line however many tenths this step passed, with the share actually done.
            self._next_tenth = min(10, self.done * 10 // self.total) + 1
            done, total, unit = self.done, self.total, self.unit
            if unit == "B":
                done, total, unit = f"{done / 1e6:.1f}", f"{total / 1e6:.1f}", "MB"
            self.logger.info("%s: %s of %s %s (%d%%)", self.label, done, total, unit, 100 * self.done // self.total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
