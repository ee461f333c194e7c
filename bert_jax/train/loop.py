"""The pre-training loop: workdir, data, sharded state, steps, logs,
evaluation, checkpoints, exact resume, signals and sequence-length phases.

`train(config, workdir, source_factory=None, step_hooks=())` runs
`config.total_steps` optimizer steps (continuing from the latest checkpoint in
the workdir) and returns the last logged metrics. Tests inject synthetic data
through `source_factory`; the command uses the real input pipeline.
`step_hooks` (`StepHook`) run every N steps on a host copy of the parameters
(the `pretrain` command's downstream probe is one); what they return is
logged beside the training metrics.

Exact resume: the checkpoint holds params, optimizer state, step and base
key, and the data item the pipeline position; dropout keys are
fold_in(base key, step). So a run stopped at step k and resumed logs the same
per-step losses as one that never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bert_jax import atomic
from bert_jax.config import model_config
from bert_jax.errors import CheckpointError, ConfigError, UserError
from bert_jax.model import ModelConfig
from bert_jax.train import evaluate as evaluate_lib
from bert_jax.train import inputs, metrics_log, mlm_distill, optim, preflight, sharding
from bert_jax.train import resume as resume_lib
from bert_jax.train import state as state_lib
from bert_jax.train import step as step_lib
from bert_jax.train import target as target_lib
from bert_jax.train.phases import (  # noqa: F401  (re-exported: part of the loop API)
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


def say(message: str) -> None:
    """A status line on the console (process 0 only)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def warn(message: str) -> None:
    """A one-line warning on stderr (process 0 only)."""
    if jax.process_index() == 0:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def check_resume_batch_size(data_state: dict, batch_size: int, workdir: str, step: int) -> None:
    """The saved data position counts batches of the batch size it was saved
    with; another batch size would silently skip or repeat examples."""
    saved = data_state.get("batch_size", _saved_config_value(workdir, "batch_size"))
    if saved is not None and int(saved) != batch_size:
        raise ConfigError(
            f"batch_size={batch_size} but {workdir}/checkpoints/{step} was saved with batch_size={saved}; "
            f"the data position depends on it: resume with --config.batch_size={saved}, or start anew in "
            "another --workdir (config.init_checkpoint to keep the weights)"
        )


def _saved_config_value(workdir: str, key: str):
    """`key` of the WORKDIR/config.json the checkpoints were trained with
    (checkpoints saved before the data position recorded the batch size)."""
    try:
        with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
            return json.load(f).get(key)
    except (OSError, ValueError, AttributeError):
        return None


LOCK_FILE = ".lock"


class TrainingDiverged(UserError):
    """The loss became NaN/Inf and config.on_nan is "stop"."""


# ---------------------------------------------------------------------------
# Workdir: writability, the lock, config.json


def prepare_workdir(workdir: str) -> None:
    probe = os.path.join(workdir, f".write-test-{os.getpid()}")
    try:
        os.makedirs(workdir, exist_ok=True)
        try:
            with open(probe, "w") as f:
                f.write("ok")
        finally:  # a full disk fails the write after the open made the file
            with contextlib.suppress(OSError):
                os.remove(probe)
    except OSError as e:
        raise UserError(
            f"cannot write to workdir {workdir} ({e.strerror or e}); pick a writable --workdir"
        ) from None


# What a start writes into the workdir before the first step; removed again
# when that start fails in a workdir that held none of them.
START_FILES = ("config.json", "checkpoints", "tb", "metrics.jsonl", resume_lib.ERROR_LOG)


def _entries(workdir: str) -> set[str] | None:
    """The workdir's entries now; None when it does not exist."""
    try:
        return set(os.listdir(workdir))
    except OSError:
        return None


def remove_start_leftovers(workdir: str, before: set[str] | None) -> None:
    """After a failed start (no step logged, no checkpoint saved): removes
    what this run created (config.json, empty checkpoints/, tb/, ...), and
    the workdir itself when this run created it and it is empty again."""
    now = _entries(workdir) or set()
    if "metrics.jsonl" in now - (before or set()) and os.path.getsize(os.path.join(workdir, "metrics.jsonl")):
        return  # steps ran: their logs are worth keeping
    ckpt_dir = os.path.join(workdir, "checkpoints")
    if "checkpoints" in now and "checkpoints" not in (before or set()) and os.listdir(ckpt_dir):
        return
    for name in START_FILES:
        if name in now and name not in (before or set()):
            path = os.path.join(workdir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)
    if before is None:
        with contextlib.suppress(OSError):
            os.rmdir(workdir)  # only when empty


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def workdir_lock(workdir: str, enabled: bool = True) -> Iterator[None]:
    """WORKDIR/.lock holding this pid; refuses while another live process
    holds it, takes over a stale one (its process is gone)."""
    if not enabled:
        yield
        return
    path = os.path.join(workdir, LOCK_FILE)
    host = socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    holder = json.load(f)
            except (OSError, ValueError):
                holder = {}
            pid = int(holder.get("pid", -1))
            if holder.get("host", host) == host and pid > 0 and pid != os.getpid() and _pid_alive(pid):
                raise UserError(
                    f"{workdir} is in use by another run (pid {pid}, {path}); wait for it, stop it, "
                    "or pick another --workdir"
                ) from None
            log.warning("taking over the stale lock %s of pid %s", path, pid)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": host}, f)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    atomic.write_text(os.path.join(workdir, "config.json"), config.to_json(indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------
# Signals


class StopFlag:
    """SIGTERM / SIGINT set a flag the loop checks after each step (it then
    saves a checkpoint and returns); a second SIGINT interrupts at once."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("received %s: saving a checkpoint after this step", signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __bool__(self) -> bool:
        return self.signal is not None


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
# The loop


def mean_metrics(window: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of each metric over a window of steps' metrics; the last
    learning rate, and the count of steps skipped as non-finite."""
    host = jax.device_get(window)
    out = {k: float(np.mean([m[k] for m in host])) for k in host[-1]}
    out["learning_rate"] = float(host[-1].get("learning_rate", 0.0))
    out["nonfinite"] = float(sum(m["nonfinite"] for m in host))
    return out


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


def _take(source, n: int) -> list[dict[str, np.ndarray]]:
    """Up to `n` batches of `source` (anything with `next`), fewer if it ends."""
    batches = []
    for _ in range(n):
        try:
            batches.append(next(source))
        except StopIteration:
            break
    return batches


class _Trainer:
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
        self.mesh = sharding.make_mesh(config.mesh)
        self.rules = sharding.rules_of(config.mesh)  # the run's logical-axis rule table
        self.flops_cfg = self.model_cfg  # the model as the step runs it (MFU)
        self.accum = int(config.optimizer.get("grad_accum_steps", 1))
        sharding.check_batch_size(int(config.batch_size), self.mesh, self.accum)
        if config.on_nan not in ("stop", "skip"):
            raise ConfigError(f"on_nan={config.on_nan!r}; expected 'stop' or 'skip'")
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
            check_resume_batch_size(data_state, int(self.config.batch_size), self.workdir, step)
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
    def source(self, phase: Phase, data_state: dict):
        train_files, _ = phase_files(self.config, self.workdir, phase)
        resume = data_state.get("pipeline") if data_state.get("phase") == phase.index else None
        spec = source_spec(int(self.config.batch_size), self.batch_sharding, phase)
        return self.source_factory(spec, "train", train_files, resume)

    def evaluate(self, params, eval_step, phase: Phase) -> dict[str, float] | None:
        if int(self.config.eval_steps) <= 0:
            return None
        _, eval_files = phase_files(self.config, self.workdir, phase)
        if not eval_files and not self.config.data.get("synthetic", False):
            log.warning("no eval data (config.data.eval_files); skipping evaluation")
            return None
        batches = self.held_out(phase, eval_files)
        return evaluate_lib.evaluate_params(
            eval_step, params, iter(batches), int(self.config.eval_steps), self.batch_sharding
        )

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

    # -- the loop -------------------------------------------------------------
    def run(self, stop: StopFlag) -> dict[str, float]:
        config = self.config
        clock = target_lib.TimeToTarget(self.target)  # train_seconds count from here, compilation included
        state, shardings, data_state = self.initial_state()
        if self.is_chief:  # after the resume checks: a refused resume leaves the saved config as it was
            write_config(config, self.workdir)
        step = int(jax.device_get(state.step))
        step_cfg, train_step, eval_step = None, None, None
        # The base dropout key, a copy: the state's own buffers are donated each step.
        rng = jnp.array(state.rng)
        log_every = max(int(config.log_every_steps), 1)
        ckpt_every, eval_every = int(config.checkpoint_every_steps), int(config.eval_every_steps)
        phase, source, last = None, None, {}
        window: list[dict[str, Any]] = []
        # The ETA counts from the end of the first step: that one includes compilation.
        started, start_step, window_start = time.monotonic(), step, time.monotonic()
        first_step = step + 1
        while step < self.total:
            if phase is None or not phase.start <= step < phase.stop:
                phase = phase_at(self.phases, step)
                source = self.source(phase, data_state)
                if phase_model_config(self.model_cfg, phase) != step_cfg:  # a phase's RoPE base (context extension)
                    step_cfg = phase_model_config(self.model_cfg, phase)
                    train_step, eval_step = self.make_steps(step_cfg, shardings)
                window_start = time.monotonic()
                say(f"phase {phase.index}: steps {phase.start}-{phase.stop} at seq {phase.seq_len}" + _phase_extras(phase))
            batch = evaluate_lib.to_global(next(source), self.batch_sharding)
            state, metrics = train_step(state, batch, rng)
            step += 1
            if step == first_step:  # compiled now: the ETA's clock starts here
                started, start_step = time.monotonic(), step
            window.append(metrics)
            boundary = step == phase.stop or step == self.total
            saving = bool(stop) or step == self.total or (ckpt_every > 0 and step % ckpt_every == 0)
            if step % log_every == 0 or saving or boundary:
                last = self._log(step, window, phase, window_start, started, start_step)
                window, window_start = [], time.monotonic()
            if (eval_every > 0 and step % eval_every == 0) or step == self.total:
                result = self.evaluate(state.params, eval_step, phase)
                if result is not None:
                    seconds = clock.seconds()
                    self.log.write(step, {**result, "train_seconds": seconds}, split="eval")
                    last.update({f"eval_{k}": v for k, v in result.items()})
                    saving |= clock.observe(step, result["mlm_accuracy"], seconds)
                window_start = time.monotonic()  # throughput counts training time only
            due = [hook for hook in self.step_hooks if step % hook.every_steps == 0]
            if due and not stop:  # after a SIGTERM the checkpoint comes first, not a probe
                self._run_hooks(due, step, state.params, last)
                window_start = time.monotonic()
            if saving or stop:  # a signal may have come during the log or eval above
                self.ckpt.save(
                    step,
                    state,
                    {"phase": phase.index, "pipeline": source.state(), "batch_size": int(config.batch_size)},
                )
            if stop:
                say(f"stopped by signal at step {step}; checkpoint saved; rerun the same command to resume")
                break
            if clock.reached_step == step:
                break
        self.ckpt.wait()
        if clock.enabled and (clock.reached_step is not None or not stop):  # a signal: the run is not over
            if self.is_chief:
                clock.write(self.workdir)
            say(clock.summary())
        return last

    def make_steps(self, model_cfg: ModelConfig, shardings) -> tuple[Callable, Callable]:
        """(train_step, eval_step) running `model_cfg` (the model of a phase)."""
        self.flops_cfg = model_cfg
        train_step = step_lib.make_train_step(
            model_cfg, self.optimizer, self.mesh, shardings, self.batch_sharding, accum_steps=self.accum,
            rules=self.rules, **self.distill,
        )
        eval_step = step_lib.make_eval_step(model_cfg, self.mesh, shardings.params, self.batch_sharding, rules=self.rules)
        return train_step, eval_step

    def _log(self, step, window, phase, window_start, started, start_step) -> dict[str, float]:
        m = mean_metrics(window)
        # Timed after mean_metrics has waited for the window's steps: before,
        # it would count only their dispatch (steps run asynchronously).
        seconds = time.monotonic() - window_start
        if m["nonfinite"] > 0:
            if self.config.on_nan == "stop":
                self.ckpt.wait()
                kept = self.ckpt.latest_step()
                raise TrainingDiverged(
                    f"loss is NaN/Inf by step {step}; the last checkpoint ({kept}) is intact and the bad update "
                    "was not applied; lower optimizer.learning_rate, or set on_nan=skip to drop such steps"
                )
            say(f"step {step}: {int(m['nonfinite'])} step(s) with a non-finite loss skipped (on_nan=skip)")
        m.update(_throughput(self.config, self.flops_cfg, phase, len(window), seconds, m.get("real_tokens")))
        self.log.write(step, m)
        self.log.progress(step, self.total, m, started, start_step)
        return m

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
    before = _entries(workdir)
    try:
        return _train(config, workdir, source_factory, step_hooks, chief)
    except BaseException:
        if chief:
            remove_start_leftovers(workdir, before)
        raise


def _train(config, workdir: str, source_factory, step_hooks: Sequence[StepHook], chief: bool) -> dict[str, float]:
    prepare_workdir(workdir)
    with (
        workdir_lock(workdir, enabled=chief),
        StopFlag() as stop,
        nn.logical_axis_rules(sharding.rules_of(config.mesh)),
        resume_lib.library_logs_to(os.path.join(workdir, resume_lib.ERROR_LOG)),
    ):
        if config.data.corpus and not config.data.vocab_file and not config.data.get("synthetic", False):
            vocab = inputs.build_vocab(config.data, workdir)
            _check_vocab_fits(config, vocab)
        trainer = _Trainer(config, workdir, source_factory, step_hooks)
        try:
            return trainer.run(stop)
        finally:
            trainer.close()


def _check_vocab_fits(config, vocab_file: str) -> None:
    n = inputs.vocab_size_of(vocab_file)
    if n > config.model.vocab_size:
        raise ConfigError(
            f"{vocab_file} has {n} tokens but model.vocab_size={config.model.vocab_size}; "
            f"set --config.model.vocab_size={n}"
        )


def distributed_init(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1) -> None:
    """jax.distributed.initialize: by hand (all three given), or auto-detected
    on TPU VM pod slices and under SLURM with more than one task."""
    if coordinator_address:
        if num_processes <= 0 or process_id < 0:
            raise ConfigError("--coordinator_address needs --num_processes and --process_id")
        if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS") == "cpu":
            # CPU collectives across processes (the local multi-process launch).
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
        jax.distributed.initialize()
