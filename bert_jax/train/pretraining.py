"""Pre-training: the job that `bert-jax pretrain` runs through the one loop
(`bert_jax.train.loop.run_steps`): workdir, data, sharded state, steps, logs,
evaluation, checkpoints, exact resume, signals and sequence-length phases.

`train(config, workdir, source_factory=None, step_hooks=())` runs
`config.total_steps` optimizer steps (continuing from the latest checkpoint in
the workdir) and returns the last logged metrics. Tests inject synthetic data
through `source_factory`; the command uses the real input pipeline.
`step_hooks` (`StepHook`) run every N steps on a host copy of the parameters
(the `pretrain` command's downstream probe is one); what they return is
logged beside the training metrics.

What the job adds to the loop: a segment per phase (its batch stream and,
where the phase changes the model, its own compiled steps), throughput and
MFU in every log, held-out MLM evaluation with the time-to-target clock
(which can end the run early), step hooks, and checkpoints holding the
phase and the input pipeline's position.

Exact resume: the checkpoint holds params, optimizer state, step and base
key, and the data item the pipeline position; dropout keys are
fold_in(base key, step). So a run stopped at step k and resumed logs the same
per-step losses as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bert_jax.config import model_config
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.model import ModelConfig
from bert_jax.train import evaluate as evaluate_lib
from bert_jax.train import inputs, loop, metrics_log, mlm_distill, optim, preflight, sharding
from bert_jax.train import resume as resume_lib
from bert_jax.train import state as state_lib
from bert_jax.train import step as step_lib
from bert_jax.train import target as target_lib
from bert_jax.train.loop import say, warn
from bert_jax.train.phases import (
    Phase,
    default_source_factory,
    phase_at,
    phase_files,
    phase_model_config,
    resolve_phases,
    resolved_vocab_file,
    source_spec,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# init_checkpoint


def init_params_from(path: str, model_cfg: ModelConfig, params: Any, shardings: Any, seed: int) -> Any:
    """`params` with every parameter the checkpoint at `path` has (ours or a
    Hugging Face folder, via bert_jax.checkpoints.load_model) replaced by its
    value; a larger position table keeps the old rows and initialises the rest.
    CheckpointError naming the parameter where shapes cannot be reconciled."""
    from bert_jax import checkpoints

    _, loaded, _ = checkpoints.load_model(path)
    loaded = checkpoints.with_layer_layout(loaded, model_cfg)
    ours, given = checkpoints.flatten_params(params), checkpoints.flatten_params(loaded)
    flat_shardings = checkpoints.flatten_params(shardings)
    rng = np.random.default_rng(seed)
    used = 0
    for key, value in given.items():
        if key not in ours:
            continue
        value = np.asarray(value, np.float32)
        want = tuple(ours[key].shape)
        name = "/".join(key)
        if value.shape != want:
            grows = "position_embeddings" in key and value.shape[1:] == want[1:] and value.shape[0] < want[0]
            if not grows:
                raise CheckpointError(
                    f"config.init_checkpoint={path}: {name} has shape {value.shape} but the model needs "
                    f"{want}; match the model sizes (hidden, heads, vocab) to the checkpoint"
                )
            extra = rng.normal(0.0, model_cfg.initializer_range, (want[0] - value.shape[0],) + want[1:])
            value = np.concatenate([value, extra.astype(np.float32)])
        ours[key] = jax.make_array_from_callback(want, flat_shardings[key], lambda idx, v=value: v[idx])
        used += 1
    say(f"init_checkpoint {path}: {used} of {len(ours)} parameters loaded, the rest freshly initialised")
    return checkpoints.unflatten_params(ours)


# ---------------------------------------------------------------------------
# Step hooks


@dataclasses.dataclass(frozen=True)
class StepHook:
    """`fn(step, params) -> {key: value}` run after every `every_steps`-th
    optimizer step (on every process, between steps). `params` is a host
    NumPy copy of the full, unsharded parameter tree: the hook cannot alter
    the training state, and the training trajectory is the same with or
    without it. The result goes to metrics.jsonl as a record with
    `"split": name`, to TensorBoard as `name/key`, and into the returned
    metrics as `name/key`."""

    name: str
    every_steps: int
    fn: Callable[[int, Any], dict[str, Any]]


def host_params(params: Any) -> Any:
    """A host (NumPy) copy of sharded `params`, gathered across processes."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(params, tiled=True)
    return jax.device_get(params)


# ---------------------------------------------------------------------------
# Logs and held-out batches


def _phase_extras(phase: Phase) -> str:
    """The phase line's masking rate and model overrides, when the phase sets them."""
    extras = [f"masking {phase.masked_lm_prob:g}"] if phase.masked_lm_prob else []
    extras += [f"{key}={value:g}" for key, value in phase.model]
    return f" ({', '.join(extras)})" if extras else ""


def _peak_flops_per_device(config) -> float:
    return float(config.get("peak_tflops_per_device", 0.0) or 0.0) * 1e12


def _throughput(
    config, model_cfg, phase: Phase, steps: int, seconds: float, real_tokens: float | None = None
) -> dict[str, float]:
    """Rates of a window of `steps` steps; `real_tokens`: its mean non-padding
    tokens per step (packed rows have almost no padding, padded rows much)."""
    seconds = max(seconds, 1e-9)
    b = int(config.batch_size)
    out = {
        "examples_per_s": steps * b / seconds,
        "tokens_per_s": steps * b * phase.seq_len / seconds,
        "seq_len": phase.seq_len,
    }
    if real_tokens is not None:
        out["real_tokens_per_s"] = steps * real_tokens / seconds
    try:
        from bert_jax import flops
    except ImportError:
        return out
    out["model_flops_per_s"] = (
        steps * flops.train_step_flops(model_cfg, b, phase.seq_len, phase.max_predictions) / seconds
    )
    peak = _peak_flops_per_device(config)
    if peak > 0:
        out["mfu"] = out["model_flops_per_s"] / (peak * jax.device_count())
    return out


def _host_batches(source) -> Iterator[dict[str, np.ndarray]]:
    """The batches of `source` (anything with `next`, not necessarily an
    iterator) until it ends."""
    while True:
        try:
            yield next(source)
        except StopIteration:
            return


def _global_batches(source, batch_sharding) -> Iterator:
    """The host batches of `source` as global arrays."""
    return (evaluate_lib.to_global(batch, batch_sharding) for batch in _host_batches(source))


def _take(source, n: int) -> list[dict[str, np.ndarray]]:
    """Up to `n` batches of `source`, fewer if it ends."""
    return list(itertools.islice(_host_batches(source), n))


class _Pretraining(loop.Job):
    """The pre-training job: built from the config (checked before anything
    runs), then `run(stop)` through the one loop."""

    learning_rate_key = "optimizer.learning_rate"

    def __init__(self, config, workdir: str, source_factory, step_hooks: Sequence[StepHook] = ()):
        self.config, self.workdir = config, workdir
        self.target = target_lib.target_of(config)  # config.target_mlm_accuracy, checked before anything runs
        self.step_hooks = tuple(step_hooks)
        for hook in self.step_hooks:
            if hook.every_steps <= 0:
                raise ConfigError(
                    f"step hook {hook.name!r} has every_steps={hook.every_steps}; use a positive count"
                )
        self.is_chief = jax.process_index() == 0
        self.model_cfg = model_config(config)
        self.phases = resolve_phases(config)
        preflight.check_run(config, self.model_cfg, self.phases)
        self.total = int(config.total_steps)
        self.schedule = loop.Schedule.of(config, self.total)
        self.mesh = sharding.make_mesh(config.mesh)
        self.rules = sharding.rules_of(config.mesh)  # the run's logical-axis rule table
        self.flops_cfg = self.model_cfg  # the model as the step runs it (MFU)
        self.accum = int(config.optimizer.get("grad_accum_steps", 1))
        sharding.check_batch_size(int(config.batch_size), self.mesh, self.accum)
        self.optimizer = optim.make_optimizer(config.optimizer, self.total)
        self.batch_sharding = sharding.batch_sharding(self.mesh)
        self.source_factory = source_factory or default_source_factory(config, workdir, self.model_cfg)
        self._held_out_key, self._held_out_batches = None, []  # see held_out
        self.ckpt = resume_lib.Checkpointer(
            os.path.join(workdir, "checkpoints"), keep=int(config.keep_checkpoints)
        )
        self.log = metrics_log.MetricsLog(workdir, enabled=self.is_chief)
        # General distillation (config.distill.teacher): checked and loaded before any step.
        self.distill = mlm_distill.step_options(
            config, self.model_cfg, self.mesh, resolved_vocab_file(config, workdir), max(p.seq_len for p in self.phases),
            self.rules,
        )
        if self.distill:
            say(f"general distillation from {config.distill.teacher} (T={config.distill.temperature}, "
                f"alpha={config.distill.alpha})")
        # Set by run: the resumed data position, the state's shardings, the
        # time-to-target clock; and per segment, its phase, source and steps.
        self.data_state: dict = {}
        self.shardings = None
        self.clock = target_lib.TimeToTarget(self.target)
        self.phase: Phase | None = None
        self.source = None
        self.step_cfg: ModelConfig | None = None
        self.eval_step: Callable | None = None
        self.train_step: Callable | None = None

    # -- state ----------------------------------------------------------------
    def initial_state(self) -> tuple[state_lib.TrainState, Any, dict]:
        first = self.phases[0]
        abstract, shardings = state_lib.abstract_state(
            self.model_cfg, self.optimizer, self.mesh, first.seq_len, first.max_predictions, self.rules
        )
        restored = self.ckpt.restore_newest_intact(abstract, warn=warn)
        if restored is not None:
            step, state, data_state = restored
            say(f"resuming from {self.workdir}/checkpoints/{step}")
            loop.check_resume_batch_size(data_state, int(self.config.batch_size), self.workdir, step)
            return state, shardings, data_state
        state, shardings = state_lib.create_sharded_state(
            self.model_cfg,
            self.optimizer,
            self.mesh,
            first.seq_len,
            first.max_predictions,
            int(self.config.seed),
            self.rules,
        )
        if self.config.init_checkpoint:
            params = init_params_from(
                self.config.init_checkpoint,
                self.model_cfg,
                state.params,
                shardings.params,
                int(self.config.seed),
            )
            state = state.replace(params=params)
        return state, shardings, {}

    # -- data -----------------------------------------------------------------
    def phase_source(self, phase: Phase):
        train_files, _ = phase_files(self.config, self.workdir, phase)
        resume = self.data_state.get("pipeline") if self.data_state.get("phase") == phase.index else None
        spec = source_spec(int(self.config.batch_size), self.batch_sharding, phase)
        return self.source_factory(spec, "train", train_files, resume)

    def held_out(self, phase: Phase, eval_files: str) -> list[dict[str, np.ndarray]]:
        """The first `eval_steps` held-out host batches of `phase`, read once
        and kept for every later evaluation of the phase. Each evaluation
        would read exactly these again (a fixed seed, no shuffling), and
        building the input pipeline costs far more than reading it: one
        tf.data stream per batch row, each traced (about 10 s at batch 64 on
        2 cores, against 1 s for 20 batches). Host memory: eval_steps batches."""
        key = (phase.index, eval_files)
        if self._held_out_key != key:
            spec = source_spec(int(self.config.batch_size), self.batch_sharding, phase)
            source = self.source_factory(spec, "eval", eval_files, None)
            self._held_out_batches = _take(source, int(self.config.eval_steps))
            self._held_out_key = key
        return self._held_out_batches

    # -- the job the loop drives ----------------------------------------------
    def segment(self, step: int) -> loop.Segment:
        """The phase holding step `step` + 1: its source, and its own steps
        where the phase changes the model (a RoPE base for context extension)."""
        self.phase = phase_at(self.phases, step)
        self.source = self.phase_source(self.phase)
        if phase_model_config(self.model_cfg, self.phase) != self.step_cfg:
            self.step_cfg = phase_model_config(self.model_cfg, self.phase)
            self.train_step, self.eval_step = self.make_steps(self.step_cfg, self.shardings)
        phase = self.phase
        say(f"phase {phase.index}: steps {phase.start}-{phase.stop} at seq {phase.seq_len}" + _phase_extras(phase))
        return loop.Segment(phase.stop, self.train_step, _global_batches(self.source, self.batch_sharding))

    def record(self, step: int, m: dict[str, float], steps: int, seconds: float, clock: loop.Clock) -> dict:
        m.update(_throughput(self.config, self.flops_cfg, self.phase, steps, seconds, m.get("real_tokens")))
        self.log.write(step, m)
        self.log.progress(step, self.total, m, clock.started, clock.start_step)
        return m

    def evaluate(self, step: int, params) -> dict[str, float] | None:
        """Held-out MLM/NSP metrics of the phase's eval files (None without
        any), written with the seconds trained so far, and seen by the
        time-to-target clock."""
        if int(self.config.eval_steps) <= 0:
            return None
        _, eval_files = phase_files(self.config, self.workdir, self.phase)
        if not eval_files and not self.config.data.get("synthetic", False):
            log.warning("no eval data (config.data.eval_files); skipping evaluation")
            return None
        batches = self.held_out(self.phase, eval_files)
        result = evaluate_lib.evaluate_params(
            self.eval_step, params, iter(batches), int(self.config.eval_steps), self.batch_sharding
        )
        seconds = self.clock.seconds()
        self.log.write(step, {**result, "train_seconds": seconds}, split="eval")
        self.clock.observe(step, result["mlm_accuracy"], seconds)
        return result

    def finished(self, step: int) -> bool:
        return self.clock.reached_step == step

    def hooks(self, step: int, params, last: dict) -> bool:
        due = [hook for hook in self.step_hooks if step % hook.every_steps == 0]
        if due:
            self._run_hooks(due, step, params, last)
        return bool(due)

    def save(self, step: int, state) -> None:
        data = {"phase": self.phase.index, "pipeline": self.source.state(), "batch_size": int(self.config.batch_size),
                "time_to_target": self.clock.state()}
        self.ckpt.save(step, state, data)

    def latest_checkpoint(self) -> int | None:
        return self.ckpt.newest_saved()

    # -- the run --------------------------------------------------------------
    def run(self, stop: loop.StopFlag) -> dict[str, float]:
        self.clock = target_lib.TimeToTarget(self.target)  # train_seconds count from here, compilation included
        state, self.shardings, self.data_state = self.initial_state()
        self.clock.resume(self.data_state.get("time_to_target"))
        if self.is_chief:  # after the resume checks: a refused resume leaves the saved config as it was
            loop.write_config(self.config, self.workdir)
        # The base dropout key, a copy: the state's own buffers are donated each step.
        rng = jnp.array(state.rng)
        outcome = loop.run_steps(self, state, rng, self.schedule, stop)
        self.ckpt.wait()
        if outcome.stopped_at is not None:
            say(f"stopped by signal at step {outcome.stopped_at}; checkpoint saved; rerun the same command to resume")
        # After a signal the run is not over, unless it reached its target.
        if self.clock.enabled and (self.clock.reached_step is not None or outcome.stopped_at is None):
            if self.is_chief:
                self.clock.write(self.workdir)
            say(self.clock.summary())
        return outcome.last

    def make_steps(self, model_cfg: ModelConfig, shardings) -> tuple[Callable, Callable]:
        """(train_step, eval_step) running `model_cfg` (the model of a phase)."""
        self.flops_cfg = model_cfg
        train_step = step_lib.make_train_step(
            model_cfg, self.optimizer, self.mesh, shardings, self.batch_sharding, accum_steps=self.accum,
            rules=self.rules, **self.distill,
        )
        eval_step = step_lib.make_eval_step(model_cfg, self.mesh, shardings.params, self.batch_sharding, rules=self.rules)
        return train_step, eval_step

    def _run_hooks(self, hooks: Sequence[StepHook], step: int, params: Any, last: dict) -> None:
        # Copied now: the next train step donates (overwrites) the state's buffers.
        host = host_params(params)
        for hook in hooks:
            result = hook.fn(step, host)
            self.log.write(step, result, split=hook.name)
            last.update({f"{hook.name}/{k}": v for k, v in result.items()})
            say(f"step {step} {hook.name}: {json.dumps(result, sort_keys=True, default=str)}")

    def close(self) -> None:
        try:
            self.ckpt.close()
        finally:
            self.log.close()


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    source_factory=None,
    step_hooks: Sequence[StepHook] = (),
) -> dict[str, float]:
    """Pre-trains per `config` in `workdir` (resuming there); returns the last
    logged metrics (with eval_* after the final evaluation, and `name/key`
    of the step hooks that ran at the last step)."""
    chief = jax.process_index() == 0
    before = loop.workdir_entries(workdir)
    try:
        return _train(config, workdir, source_factory, step_hooks, chief)
    except BaseException:
        if chief:
            loop.remove_start_leftovers(workdir, before)
        raise


def _train(config, workdir: str, source_factory, step_hooks: Sequence[StepHook], chief: bool) -> dict[str, float]:
    loop.prepare_workdir(workdir)
    with (
        loop.workdir_lock(workdir, enabled=chief),
        loop.StopFlag() as stop,
        nn.logical_axis_rules(sharding.rules_of(config.mesh)),
        resume_lib.library_logs_to(os.path.join(workdir, resume_lib.ERROR_LOG)),
    ):
        if config.data.corpus and not config.data.vocab_file and not config.data.get("synthetic", False):
            vocab = inputs.build_vocab(config.data, workdir)
            _check_vocab_fits(config, vocab)
        job = _Pretraining(config, workdir, source_factory, step_hooks)
        try:
            return job.run(stop)
        finally:
            job.close()


def _check_vocab_fits(config, vocab_file: str) -> None:
    n = inputs.vocab_size_of(vocab_file)
    if n > config.model.vocab_size:
        raise ConfigError(
            f"{vocab_file} has {n} tokens but model.vocab_size={config.model.vocab_size}; "
            f"set --config.model.vocab_size={n}"
        )

