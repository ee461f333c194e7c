"""Time to a target held-out MLM accuracy (`config.target_mlm_accuracy`).

With a target in (0, 1) the pre-training loop stops at the first periodic
held-out evaluation whose MLM accuracy reaches it (saving a checkpoint there),
and writes WORKDIR/time_to_target.json:

    {"target": 0.3, "reached": true, "step": 1200, "train_seconds": 642.1,
     "best_mlm_accuracy": 0.301, "best_step": 1200, "best_train_seconds": 642.1}

`train_seconds` is wall time in the training loop (state creation and
compilation included). A resumed run goes on from the seconds and the best
evaluation its checkpoint saved (`state()`, `resume()`), so a run stopped
by SIGTERM and resumed reports its whole training time, not the last leg's;
the time between the stop and the restart is not counted. A run that ends without reaching the target writes the same file with
`reached: false` and `step`/`train_seconds` null, and still exits 0.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

from bert_jax import atomic
from bert_jax.errors import ConfigError

TARGET_FILE = "time_to_target.json"


def target_of(config) -> float:
    """config.target_mlm_accuracy, checked: 0 (off) or in (0, 1) with periodic
    held-out evaluation on some eval data; ConfigError naming the keys otherwise."""
    target = float(config.get("target_mlm_accuracy", 0.0) or 0.0)
    if target == 0.0:
        return 0.0
    if not 0.0 < target < 1.0:  # NaN fails this too
        raise ConfigError(
            f"target_mlm_accuracy={target:g}; use a held-out MLM accuracy in (0, 1), or 0 for no target"
        )
    every, steps = int(config.eval_every_steps), int(config.eval_steps)
    if every <= 0 or steps <= 0:
        raise ConfigError(
            f"target_mlm_accuracy={target:g} is checked at each held-out evaluation but eval_every_steps="
            f"{every} and eval_steps={steps}; set both positive"
        )
    if not _has_eval_data(config):
        raise ConfigError(
            f"target_mlm_accuracy={target:g} needs held-out data but data.eval_files, data.eval_corpus and "
            "data.corpus are all empty; set data.eval_files (or data.eval_corpus with data.corpus)"
        )
    return target


def _has_eval_data(config) -> bool:
    """Whether the run evaluates on something: synthetic batches, eval shards
    (the data section's or a phase's), or shards built from data.corpus."""
    data = config.data
    if data.get("synthetic", False) or data.get("eval_files") or data.get("corpus"):
        return True
    return any(phase.get("eval_files") for phase in config.get("phases", []) or [])


@dataclasses.dataclass
class TimeToTarget:
    """The bookkeeping of one run: its clock, the best evaluation so far and
    whether the target was reached. `target` 0 means off (nothing written)."""

    target: float
    started: float = dataclasses.field(default_factory=time.monotonic)
    best_accuracy: float | None = None
    best_step: int | None = None
    best_seconds: float | None = None
    reached_step: int | None = None
    reached_seconds: float | None = None

    @property
    def enabled(self) -> bool:
        return self.target > 0.0

    def seconds(self) -> float:
        """Wall seconds since the loop started."""
        return time.monotonic() - self.started

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the clock: the seconds so far and the best evaluation."""
        return {
            "train_seconds": self.seconds(),
            "best_mlm_accuracy": self.best_accuracy,
            "best_step": self.best_step,
            "best_train_seconds": self.best_seconds,
        }

    def resume(self, saved: dict[str, Any] | None) -> None:
        """Continues from a checkpoint's `state()` (None: a fresh run, or a
        checkpoint written before the clock was saved): the seconds go on
        from the saved ones, the best evaluation is the saved one."""
        if not saved:
            return
        self.started -= float(saved.get("train_seconds") or 0.0)
        if saved.get("best_mlm_accuracy") is not None:
            self.best_accuracy = float(saved["best_mlm_accuracy"])
            self.best_step = int(saved["best_step"])
            self.best_seconds = float(saved["best_train_seconds"])

    def observe(self, step: int, accuracy: float, seconds: float) -> bool:
        """Records one evaluation; True when the run should stop here (the
        target is on and `accuracy` reaches it)."""
        if self.best_accuracy is None or accuracy > self.best_accuracy:
            self.best_accuracy, self.best_step, self.best_seconds = float(accuracy), int(step), float(seconds)
        if self.enabled and self.reached_step is None and accuracy >= self.target:
            self.reached_step, self.reached_seconds = int(step), float(seconds)
            return True
        return False

    def record(self) -> dict[str, Any]:
        """The time_to_target.json object."""
        return {
            "target": self.target,
            "reached": self.reached_step is not None,
            "step": self.reached_step,
            "train_seconds": _rounded(self.reached_seconds),
            "best_mlm_accuracy": self.best_accuracy,
            "best_step": self.best_step,
            "best_train_seconds": _rounded(self.best_seconds),
        }

    def summary(self) -> str:
        """One line: the step and time the target was reached, or the best reached."""
        if self.reached_step is not None:
            return (
                f"reached MLM accuracy {self.best_accuracy:.3f} >= target {self.target:g} at step "
                f"{self.reached_step} after {self.reached_seconds:.0f} s"
            )
        if self.best_accuracy is None:
            return f"target {self.target:g} not reached: no held-out evaluation ran"
        return (
            f"target {self.target:g} not reached: best {self.best_accuracy:.3f} at step {self.best_step} "
            f"({self.best_seconds:.0f} s)"
        )

    def write(self, workdir: str) -> str:
        """Writes WORKDIR/time_to_target.json; returns its path."""
        path = os.path.join(workdir, TARGET_FILE)
        atomic.write_text(path, json.dumps(self.record(), indent=1, sort_keys=True) + "\n")
        return path


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None or not math.isfinite(seconds) else round(seconds, 3)
