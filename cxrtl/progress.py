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
    """

    def __init__(self, total: int | None, label: str, logger: logging.Logger, unit: str = "images") -> None:
        self.total, self.label, self.logger, self.unit = total, label, logger, unit
        self.done = 0
        self._next_tenth = 1
        self._bar = (
            tqdm(total=total, desc=label, unit=unit, unit_scale=unit == "B", leave=False, file=sys.stderr)
            if sys.stderr.isatty()
            else None
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.total:
            while self._next_tenth <= 10 and self.done * 10 >= self._next_tenth * self.total:
                done, total, unit = self.done, self.total, self.unit
                if unit == "B":
                    done, total, unit = f"{done / 1e6:.1f}", f"{total / 1e6:.1f}", "MB"
                self.logger.info("%s: %s of %s %s (%d%%)", self.label, done, total, unit, 10 * self._next_tenth)
                self._next_tenth += 1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
