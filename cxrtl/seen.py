"""Which images a model has seen: the content hashes of the images it trained on and chose its epoch on.

Train writes them beside the model (``seen.json``; in the store under the model's keys, and the champion's
with it). A model scored on images it has seen looks better than it is; evaluate refuses that unless told
otherwise, and promotion compares two models only on test images neither has seen.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrtl.data import PreparedData
from cxrtl.errors import CxrtlError

logger = logging.getLogger(__name__)

SEEN_FILE = "seen.json"


@dataclass(frozen=True)
class Seen:
    trained: frozenset[str]  # content hashes of the training split
    selected: frozenset[str]  # of the split the best epoch was chosen on (the test split in the paper recipe)

    @property
    def any(self) -> frozenset[str]:
        return self.trained | self.selected

    @classmethod
    def of(cls, data: PreparedData, selection_split: str) -> Seen | None:
        """What a model trained on ``data`` sees; None for data prepared before images had content hashes."""
        if data.hashes is None:
            return None
        return cls(
            trained=frozenset(data.hashes[i] for i in data.indices("train")),
            selected=frozenset(data.hashes[i] for i in data.indices(selection_split)),
        )

    def to_json(self) -> str:
        return json.dumps({"trained": sorted(self.trained), "selected": sorted(self.selected)})

    @classmethod
    def read(cls, path: Path) -> Seen | None:
        """The record at ``path``; None when there is none (a model trained before models kept one)."""
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            return cls(frozenset(record["trained"]), frozenset(record["selected"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise CxrtlError(
                f"{path}: a damaged record of the images the model has seen ({type(exc).__name__})"
            ) from None


def seen_in(data: PreparedData, indices: np.ndarray, hashes: frozenset[str]) -> np.ndarray:
    """Which of the images ``indices`` of ``data`` are among ``hashes`` (bool per index)."""
    if data.hashes is None:
        raise CxrtlError("the preprocessed data has no content hashes (hashes.json); preprocess it again")
    return np.array([data.hashes[i] in hashes for i in indices], dtype=bool)
