"""The one training loop of every job, and what a run needs around it.

`run_steps(job, state, rng, schedule, stop)` drives a `Job` (pre-training in
`bert_jax.train.pretraining`; fine-tuning, distillation and pruning's
recovery through `bert_jax.finetune.runner`) from the state's step to
`schedule.total`: each step on the next batch of the job's current
`Segment` (a sequence-length phase, or the whole run), the window of metrics
logged and checked for non-finite losses, evaluations, hooks and
checkpoints when due, and after SIGTERM/SIGINT (`StopFlag`) a checkpoint,
then the run ends with `Outcome.stopped_at` set. The job decides what each
of those writes; the loop decides when.

Around it: the workdir (writability, the lock, config.json, what a failed
start leaves), the resume batch-size check, the console lines, and
`distributed_init` for multi-process runs.
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
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np

from bert_jax import atomic
from bert_jax.errors import ConfigError, UserError
from bert_jax.train import resume as resume_lib

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


def workdir_entries(workdir: str) -> set[str] | None:
    """The workdir's entries now; None when it does not exist."""
    try:
        return set(os.listdir(workdir))
    except OSError:
        return None


def remove_start_leftovers(workdir: str, before: set[str] | None) -> None:
    """After a failed start (no step logged, no checkpoint saved): removes
    what this run created (config.json, empty checkpoints/, tb/, ...), and
    the workdir itself when this run created it and it is empty again."""
    now = workdir_entries(workdir) or set()
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
# The loop


def mean_metrics(window: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of each metric over a window of steps' metrics; the last
    learning rate, and the count of steps skipped as non-finite."""
    host = jax.device_get(window)
    out = {k: float(np.mean([m[k] for m in host])) for k in host[-1]}
    out["learning_rate"] = float(host[-1].get("learning_rate", 0.0))
    out["nonfinite"] = float(sum(m["nonfinite"] for m in host))
    return out


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When the loop logs, evaluates and checkpoints, in optimizer steps."""

    total: int
    log_every: int = 1
    eval_every: int = 0  # 0: at the end only
    checkpoint_every: int = 0  # 0: at the end (and after a signal) only
    on_nan: str = "stop"  # or "skip": go on after a step whose loss is NaN/Inf (its update was not applied)

    @classmethod
    def of(cls, config, total: int) -> Schedule:
        """The schedule a job config's `log_every_steps`, `eval_every_steps`,
        `checkpoint_every_steps` and `on_nan` give, for `total` steps."""
        on_nan = config.get("on_nan", "stop")
        if on_nan not in ("stop", "skip"):
            raise ConfigError(f"on_nan={on_nan!r}; expected 'stop' or 'skip'")
        return cls(
            total,
            max(int(config.get("log_every_steps", 1) or 1), 1),
            int(config.get("eval_every_steps", 0) or 0),
            int(config.get("checkpoint_every_steps", 0) or 0),
            on_nan,
        )

    def evaluates_at(self, step: int) -> bool:
        return (self.eval_every > 0 and step % self.eval_every == 0) or step == self.total


@dataclasses.dataclass(frozen=True)
class Segment:
    """Steps up to `stop` that share one jitted step and one batch stream: a
    pre-training phase (sequence length, masking rate), or all of a
    fine-tuning run. `batches` yields batches ready for `step`."""

    stop: int
    step: Callable[[Any, Any, Any], tuple[Any, dict]]  # (state, batch, rng) -> (state, metrics)
    batches: Iterator[Any]


@dataclasses.dataclass
class Clock:
    """Wall-clock marks of a run (time.monotonic seconds): when the loop
    began (`began`, compilation included), when the timed part began
    (`started`, at `start_step`: after the first step, which includes
    compilation) and when the current log window began (reset after
    evaluations and hooks, so throughput counts training time only)."""

    began: float
    started: float
    start_step: int
    window_start: float


class Job(Protocol):
    """What a job (pre-training, fine-tuning, distillation, pruning's
    recovery) gives the loop; the loop gives it the steps, the logging
    cadence, the non-finite guard, evaluation and checkpoint timing and the
    signal stop. A job that subclasses Job explicitly inherits `finished`
    and `hooks` that do nothing."""

    # The config key the non-finite guard's message tells the user to lower.
    learning_rate_key: str = "the learning rate"

    def segment(self, step: int) -> Segment:
        """The segment that holds step `step` + 1 (the next to run)."""

    def record(self, step: int, metrics: dict[str, float], steps: int, seconds: float, clock: Clock) -> dict:
        """Writes a window's mean metrics (of `steps` steps that took
        `seconds`); returns what the run reports as its last metrics."""

    def evaluate(self, step: int, params: Any) -> dict[str, float] | None:
        """The evaluation at `step` (written where the job keeps them), or None."""

    def finished(self, step: int) -> bool:
        """Whether the run ends early after `step` (a reached target)."""
        return False

    def hooks(self, step: int, params: Any, last: dict) -> bool:
        """Work between steps (pre-training's probes); True when it ran."""
        return False

    def save(self, step: int, state: Any) -> None:
        """A checkpoint of `state` after `step`, with the job's own data."""

    def latest_checkpoint(self) -> int | None:
        """The newest complete checkpoint's step (waiting for writes), or None."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The last state, the last logged metrics (with `eval_*` of the last
    evaluation), and the step a signal stopped the run at (None: it ran to
    its end or its target)."""

    state: Any
    last: dict[str, float]
    stopped_at: int | None = None


def run_steps(job: Job, state, rng, schedule: Schedule, stop: StopFlag | None = None,
              after_step: Callable[[int], None] | None = None) -> Outcome:
    """The loop of every job: from `state.step` to `schedule.total`, each
    step on the next batch of its segment with base key `rng` (the step
    folds in the step number). A log every `schedule.log_every` steps, at a
    checkpoint, at a segment's end and at the end (the non-finite guard
    reads it); an evaluation per `schedule`; hooks; a checkpoint every
    `schedule.checkpoint_every` steps, at the end, at a reached target and
    after `stop` (a StopFlag) is set, which then ends the run.
    `after_step(i)` runs after step i (tests send their signal from it)."""
    step = int(jax.device_get(state.step))
    now = time.monotonic()
    clock = Clock(now, now, step, now)  # the ETA counts from the end of the first step (which compiles)
    first_step = step + 1
    segment, window, last = None, [], {}
    while step < schedule.total:
        if segment is None or step >= segment.stop:
            segment = job.segment(step)
            clock.window_start = time.monotonic()
        state, metrics = segment.step(state, next(segment.batches), rng)
        step += 1
        if step == first_step:
            clock.started, clock.start_step = time.monotonic(), step
        window.append(metrics)
        if after_step is not None:
            after_step(step)
        stopping = bool(stop) and step < schedule.total
        end = step == schedule.total
        saving = stopping or end or (schedule.checkpoint_every > 0 and step % schedule.checkpoint_every == 0)
        if step % schedule.log_every == 0 or saving or step == segment.stop:
            last = _log_window(job, schedule, step, window, clock)
            window = []
        finished = False
        if schedule.evaluates_at(step):
            result = job.evaluate(step, state.params)
            if result is not None:
                last.update({f"eval_{k}": v for k, v in result.items()})
                finished = job.finished(step)
            clock.window_start = time.monotonic()
        if not stop and job.hooks(step, state.params, last):  # after a signal: the checkpoint first
            clock.window_start = time.monotonic()
        stopping = bool(stop) and step < schedule.total  # again: a signal may have come during the above
        if saving or stopping or finished:
            job.save(step, state)
        if stopping:
            return Outcome(state, last, step)
        if finished:
            break
    return Outcome(state, last)


def _log_window(job: Job, schedule: Schedule, step: int, window: list[dict], clock: Clock) -> dict:
    """The mean metrics of the steps since the last log, timed after they
    synced (steps run asynchronously), to the job's records. A step with a
    non-finite loss was skipped by the engine; on_nan="stop" stops here."""
    m = mean_metrics(window)
    seconds = time.monotonic() - clock.window_start
    clock.window_start = time.monotonic()
    if m["nonfinite"] > 0:
        if schedule.on_nan == "stop":
            kept = job.latest_checkpoint()
            intact = f"the last checkpoint ({kept}) is intact and " if kept is not None else ""
            raise TrainingDiverged(
                f"loss is NaN/Inf by step {step}; {intact}the bad update was not applied; lower "
                f"{job.learning_rate_key}, or set on_nan=skip to drop such steps"
            )
        say(f"step {step}: {int(m['nonfinite'])} step(s) with a non-finite loss skipped (on_nan=skip)")
    return job.record(step, m, len(window), seconds, clock)


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
