"""The shapes a task family's reader hands the trainer: `Prepared` and `EvalSet`.

Kept apart from `tasks` (which dispatches to the readers) so that the readers
can use them without importing their own dispatcher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass
class EvalSet:
    """Features `[n, ...]` of a dev/test file and `score(outputs) -> metrics`,
    where `outputs` are the head's NumPy outputs for all n rows in order."""

    features: dict[str, np.ndarray]
    score: Callable[[Any], dict[str, float]]

    @property
    def size(self) -> int:
        return len(self.features["input_ids"])


@dataclasses.dataclass
class Prepared:
    """A task ready to train: `head` (see `step.HEADS`), `num_labels`, label
    names (None for regression and spans), train features, named dev sets
    ("dev" first; its `primary` metric picks the best checkpoint)."""

    task: str
    head: str
    num_labels: int
    labels: list[str] | None
    train: dict[str, np.ndarray]
    dev: dict[str, EvalSet]
    primary: str
