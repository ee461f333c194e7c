"""Fine-tuning, task distillation and pruning's recovery in the one loop, with
pre-training's reliability.

`run_steps` drives an engine step (`bert_jax.train.engine`) over a batch
iterator: logs (metrics.jsonl, TensorBoard, an absl line), dev evaluation
and the best-so-far parameters, orbax checkpoints of the TrainState, the
data position and the best parameters in RUN_DIR/checkpoints (`RunFiles`),
exact resume from there, the non-finite stop (config.on_nan), and after
SIGTERM/SIGINT (`bert_jax.train.loop.StopFlag`) a checkpoint, then
`Stopped`. The workdir lock, StopFlag, metrics log and checkpointer are
pre-training's (`train.loop`, `train.metrics_log`, `train.resume`).

The loop itself is every job's (`bert_jax.train.loop.run_steps`, which
pre-training drives too); what is here is what fine-tuning adds to it: dev
selection of the best parameters, and checkpoints that carry them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
from absl import logging

from bert_jax import checkpoints
from bert_jax.train import engine, metrics_log
from bert_jax.train import loop as loop
from bert_jax.train import resume as resume_lib
from bert_jax.train.state import TrainState


class Stopped(Exception):
    """SIGTERM/SIGINT stopped training after `step`; that step's checkpoint is saved."""

    def __init__(self, step: int):
        super().__init__(f"stopped by signal at step {step}")
        self.step = step


@dataclasses.dataclass
class Best:
    """The best dev evaluation so far: its metrics, step and parameters (NumPy)."""

    metrics: dict[str, float] | None = None
    step: int = 0
    params: Any = None

    def offer(self, metrics: dict[str, float], step: int, primary: str, params: Callable[[], Any]) -> bool:
        """Keeps `metrics` (and `params()`) when the first or better on `primary`."""
        if self.metrics is not None and not metrics[primary] > self.metrics[primary]:
            return False
        self.metrics, self.step, self.params = metrics, step, params()
        return True


class RunFiles:
    """A run's checkpoints (RUN_DIR/checkpoints: the TrainState, the data
    position and the best dev parameters so far), metrics.jsonl and
    TensorBoard log (RUN_DIR/tb), written by process 0."""

    def __init__(self, run_dir: str | os.PathLike, config):
        self.run_dir = str(run_dir)
        self.chief = jax.process_index() == 0
        self.ckpt = resume_lib.Checkpointer(os.path.join(self.run_dir, "checkpoints"),
                                            keep=int(config.get("keep_checkpoints", 1)), extra_items=("best",))
        self.log = metrics_log.MetricsLog(self.run_dir, enabled=self.chief,
                                          tensorboard=bool(config.get("tensorboard", True)))

    def restore(self, state: TrainState, shardings, batch_size: int,
                keep: Callable[[Any], Any] = lambda p: p) -> tuple[TrainState, Best]:
        """The newest intact checkpoint's (state, best so far; its params
        are `keep(params)`'s), or (`state`, Best()) when there is none."""
        restored = self.ckpt.restore_newest_intact(engine.abstract_like(state, shardings), warn=loop.warn)
        if restored is None:
            return state, Best()
        step, state, data = restored
        loop.say(f"resuming from {self.run_dir}/checkpoints/{step}")
        loop.check_resume_batch_size(data, batch_size, self.run_dir, step)
        best = Best(data.get("best"), int(data.get("best_step", 0)))
        if best.metrics is not None:
            abstract = engine.abstract_like(keep(state.params))
            best.params = checkpoints.numpy_params(self.ckpt.restore_extra(step, "best", abstract))
        return state, best

    def save(self, step: int, state: TrainState, best: Best, batch_size: int) -> None:
        data = {"batch_size": batch_size, "best": best.metrics, "best_step": best.step}
        self.ckpt.save(step, state, data, extras={"best": best.params} if best.params is not None else None)

    def close(self) -> None:
        try:
            self.ckpt.close()
        finally:
            self.log.close()


@dataclasses.dataclass
class _FineTuning(loop.Job):
    """Fine-tuning's job in the one loop (`loop.run_steps`): one segment (the
    whole run, one batch stream), an absl line and with `files`
    metrics.jsonl/TensorBoard per log window, the dev evaluation that keeps
    the best parameters, and checkpoints with the best so far."""

    config: Any
    train_step: Callable
    batches: Iterator
    total: int
    scores: Callable[[Any], dict] | None
    primary: str
    files: RunFiles | None
    keep: Callable[[Any], Any]
    best: Best
    name: str
    learning_rate_key = "config.learning_rate"  # not a field: a class attribute

    def segment(self, step: int) -> loop.Segment:
        return loop.Segment(self.total, self.train_step, self.batches)

    def record(self, step: int, m: dict[str, float], steps: int, seconds: float, clock: loop.Clock) -> dict:
        logging.info("%s %d/%d loss %.4f (%.0f s)", self.name, step, self.total, m["loss"], time.monotonic() - clock.began)
        if self.files is not None:
            self.files.log.write(step, m)
        return m

    def evaluate(self, step: int, params) -> dict[str, float] | None:
        if self.scores is None:
            return None
        dev = self.scores(params)
        logging.info("%s %d dev %s", self.name, step, json.dumps(dev))
        if self.files is not None:
            self.files.log.write(step, dev, split="eval")
        self.best.offer(dev, step, self.primary, lambda: checkpoints.numpy_params(self.keep(params)))
        return dev

    def save(self, step: int, state: TrainState) -> None:
        if self.files is not None:
            self.files.save(step, state, self.best, int(self.config.batch_size))

    def latest_checkpoint(self) -> int | None:
        if self.files is None:
            return None
        return self.files.ckpt.newest_saved()


def run_steps(config, state: TrainState, train_step, rng, batches: Iterator, scores: Callable[[Any], dict] | None,
              primary: str, total: int, files: RunFiles | None = None, stop=None,
              after_step: Callable[[int], None] | None = None, keep: Callable[[Any], Any] = lambda p: p,
              best: Best | None = None, name: str = "step") -> tuple[TrainState, Best]:
    """Fine-tuning, distillation or pruning's recovery through the one loop;
    returns (the last state, the best evaluation). Steps from `state.step` to
    `total`, each on the next of `batches` with base key `rng`; every
    `config.eval_every_steps` (0: at the end only) and at the end
    `scores(params)` (dev metrics; None: no evaluation) decide the best
    checkpoint (`keep(params)` as NumPy). With `files`:
    metrics.jsonl/TensorBoard records, a checkpoint every
    `config.checkpoint_every_steps` and at the end, and after `stop` (a
    `loop.StopFlag`) is set, a checkpoint, then `Stopped`. `after_step(i)`
    runs after step i (tests send their signal from it)."""
    job = _FineTuning(config, train_step, batches, total, scores, primary, files, keep, best or Best(), name)
    schedule = loop.Schedule.of(config, total)
    outcome = loop.run_steps(job, state, rng, schedule, stop if files is not None else None, after_step)
    if files is not None:
        files.ckpt.wait()
    if outcome.stopped_at is not None:
        raise Stopped(outcome.stopped_at)
    return outcome.state, job.best
