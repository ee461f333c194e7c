"""The loop of fine-tuning, task distillation and pruning's recovery, with
pre-training's reliability.

`run_steps` drives an engine step (`bert_jax.train.engine`) over a batch
iterator: logs (metrics.jsonl, TensorBoard, an absl line), dev evaluation
and the best-so-far parameters, orbax checkpoints of the TrainState, the
data position and the best parameters in RUN_DIR/checkpoints (`RunFiles`),
exact resume from there, the non-finite stop (config.on_nan), and after
SIGTERM/SIGINT (`bert_jax.train.loop.StopFlag`) a checkpoint, then
`Stopped`. The workdir lock, StopFlag, metrics log and checkpointer are
pre-training's (`train.loop`, `train.metrics_log`, `train.resume`).

Why not pre-training's `_Trainer.run`: that loop also owns sequence-length
phases, the streaming input pipeline's position, throughput/MFU and step
hooks, and has no dev-set selection; merging the two is issue 18's next
step.
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


def run_steps(config, state: TrainState, train_step, rng, batches: Iterator, scores: Callable[[Any], dict] | None,
              primary: str, total: int, files: RunFiles | None = None, stop=None,
              after_step: Callable[[int], None] | None = None, keep: Callable[[Any], Any] = lambda p: p,
              best: Best | None = None, name: str = "step") -> tuple[TrainState, Best]:
    """The loop of fine-tuning, distillation and pruning's recovery; returns
    (the last state, the best evaluation). Steps from `state.step` to
    `total`, each on the next of `batches` with base key `rng`; every
    `config.eval_every_steps` (0: at the end only) and at the end
    `scores(params)` (dev metrics; None: no evaluation) decide the best
    checkpoint (`keep(params)` as NumPy). With `files`:
    metrics.jsonl/TensorBoard records, a checkpoint every
    `config.checkpoint_every_steps` and at the end, and after `stop` (a
    `loop.StopFlag`) is set, a checkpoint, then `Stopped`. `after_step(i)`
    runs after step i (tests send their signal from it)."""
    best = best or Best()
    first = int(jax.device_get(state.step)) + 1
    every = config.eval_every_steps or total
    ckpt_every = int(config.get("checkpoint_every_steps", 0) or 0)
    window: list[dict] = []
    start = time.time()
    for i in range(first, total + 1):
        state, metrics = train_step(state, next(batches), rng)
        window.append(metrics)
        if after_step is not None:
            after_step(i)
        stopping = files is not None and bool(stop) and i < total
        if i % config.log_every_steps == 0 or i == total or stopping:
            _log_window(config, files, i, total, window, start, name)
            window = []
        if scores is not None and (i % every == 0 or i == total):
            dev = scores(state.params)
            logging.info("%s %d dev %s", name, i, json.dumps(dev))
            if files is not None:
                files.log.write(i, dev, split="eval")
            best.offer(dev, i, primary, lambda params=state.params: checkpoints.numpy_params(keep(params)))
        if files is not None and (stopping or i == total or (ckpt_every > 0 and i % ckpt_every == 0)):
            files.save(i, state, best, int(config.batch_size))
        if stopping:
            files.ckpt.wait()
            raise Stopped(i)
    if files is not None:
        files.ckpt.wait()
    return state, best


def _log_window(config, files: RunFiles | None, step: int, total: int, window: list[dict], start: float,
                name: str) -> None:
    """The mean metrics of the steps since the last log: the absl line, and
    with `files` metrics.jsonl / TensorBoard. A step with a non-finite loss
    was skipped by the engine; config.on_nan="stop" (the default) stops."""
    m = loop.mean_metrics(window)
    logging.info("%s %d/%d loss %.4f (%.0f s)", name, step, total, m["loss"], time.time() - start)
    if files is not None:
        files.log.write(step, m)
    if m["nonfinite"] > 0:
        if config.get("on_nan", "stop") == "stop":
            if files is not None:
                files.ckpt.wait()
            raise loop.TrainingDiverged(
                f"loss is NaN/Inf by step {step}; the bad update was not applied; lower config.learning_rate, "
                "or set config.on_nan=skip to drop such steps"
            )
        loop.say(f"step {step}: {int(m['nonfinite'])} step(s) with a non-finite loss skipped (on_nan=skip)")
