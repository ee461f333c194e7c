"""Exact resume of pre-training: the orbax manager of
WORKDIR/checkpoints/<step>/{state,data}, saving and restoring the whole
TrainState and the input position. (Reading a model out of any checkpoint,
a workdir's params among them, is `bert_jax.checkpoints`.)

`state` is the TrainState as a pytree (params, opt_state, step, rng; the
params are what bert_jax.checkpoints.load_model restores) and `data` the
input pipeline position (JSON). Saves are asynchronous (training goes on
while the arrays are written) and atomic: orbax writes into a temporary
directory and renames it when complete, so an interrupted save is never
listed as a step. Restores are sharded: each array lands directly with the
target sharding, whatever mesh saved it. gs:// paths work the same way
(orbax writes through TensorStore).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp

from bert_jax.checkpoints import ERROR_LOG, stderr_to
from bert_jax.errors import CheckpointError
from bert_jax.train.state import TrainState

log = logging.getLogger(__name__)


def _is_remote(path: str) -> bool:
    return "://" in str(path)


class DamagedCheckpoint(CheckpointError):
    """A saved step whose files cannot be read back (a missing or truncated
    array file, garbage metadata): `step` names it."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


# What orbax / TensorStore raise for unreadable checkpoint files.
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RuntimeError)




@contextlib.contextmanager
def library_logs_to(path: str) -> Iterator[None]:
    """Routes what orbax logs through absl (errors of a failed asynchronous
    save with their tracebacks, hundreds of lines) to the file `path`, not
    stderr: the user sees the one-line CheckpointError. Kept on stderr with
    BERT_JAX_TRACEBACK set."""
    if os.environ.get("BERT_JAX_TRACEBACK") or _is_remote(path):
        yield
        return
    absl_logger = logging.getLogger("absl")
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    propagate = absl_logger.propagate
    absl_logger.addHandler(handler)
    absl_logger.propagate = False
    try:
        yield
    finally:
        absl_logger.propagate = propagate
        absl_logger.removeHandler(handler)
        handler.close()


class Checkpointer:
    """Save every N steps, keep the last K, restore onto any shardings."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True,
                 extra_items: tuple[str, ...] = ()):
        """`extra_items`: names of further pytrees a step may hold beside
        the state (fine-tuning's best-so-far parameters, "best"), saved
        with `save(..., extras=)` and read back with `restore_extra`."""
        self.directory = str(directory) if _is_remote(str(directory)) else os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep if keep > 0 else None,
            create=True,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=options,
                item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                               **{name: ocp.StandardCheckpointHandler() for name in extra_items}},
            )
        except OSError as e:
            raise CheckpointError(f"cannot create checkpoint directory {self.directory} ({e})") from None
        self._pending: int | None = None

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: TrainState, data_state: dict[str, Any],
             extras: dict[str, Any] | None = None) -> None:
        """Starts an asynchronous save of `state` and `data_state` (and the
        `extras` pytrees, by item name) at `step`; a failure (disk full,
        permissions) is a CheckpointError naming the last complete step,
        which stays on disk."""
        self._check_previous()
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state.to_dict()), data=ocp.args.JsonSave(data_state),
            **{name: ocp.args.StandardSave(tree) for name, tree in (extras or {}).items()},
        )
        try:
            self._manager.save(step, args=args, force=True)
        except (OSError, ValueError) as e:
            self._raise_failed(step, e)
        self._pending = step

    def _check_previous(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        try:
            self._manager.wait_until_finished()
        except (OSError, ValueError) as e:
            self._raise_failed(pending, e)

    def _raise_failed(self, step: int, error: Exception) -> None:
        complete = [s for s in self._manager.all_steps(read=True) if s != step]
        kept = f"step {max(complete)} is intact" if complete else "no earlier checkpoint exists"
        raise CheckpointError(
            f"saving checkpoint step {step} in {self.directory} failed ({_first_line(error)}); {kept}; "
            "free disk space or fix permissions and rerun to resume"
        ) from None

    def wait(self) -> None:
        """Blocks until the last save is on disk (raises if it failed)."""
        self._check_previous()

    def newest_saved(self) -> int | None:
        """The newest checkpoint's step once the last save is on disk, or None."""
        self.wait()
        return self.latest_step()

    def restore(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """(state placed with `abstract_state`'s shardings, data position).
        A checkpoint of another model shape raises CheckpointError naming the
        first parameter that differs."""
        with stderr_to(self._error_log()):
            self._check_shapes(step, abstract_state)
            args = ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state.to_dict()), data=ocp.args.JsonRestore()
            )
            restored = self._restore(step, args)
        return TrainState.from_dict(restored["state"]), dict(restored["data"] or {})

    def restore_extra(self, step: int, name: str, abstract: Any) -> Any:
        """The `name` pytree saved with step `step`, placed as `abstract`
        (ShapeDtypeStructs) says."""
        with stderr_to(self._error_log()):
            restored = self._restore(step, ocp.args.Composite(**{name: ocp.args.StandardRestore(abstract)}))
        return restored[name]

    def _error_log(self) -> str | None:
        """WORKDIR/checkpoint-errors.log: where library tracebacks go (local dirs only)."""
        return None if _is_remote(self.directory) else os.path.join(os.path.dirname(self.directory), ERROR_LOG)

    def _restore(self, step: int, args) -> dict[str, Any]:
        try:
            return self._manager.restore(step, args=args)
        except _READ_ERRORS as e:
            raise DamagedCheckpoint(f"{self.directory}/{step} cannot be restored ({_first_line(e)})", step) from None

    def restore_newest_intact(
        self, abstract_state: TrainState, warn=None
    ) -> tuple[int, TrainState, dict[str, Any]] | None:
        """(step, state, data position) of the newest step that restores;
        each damaged newer one is reported through `warn` (one line naming
        it and the step used instead). None when there is no step at all;
        DamagedCheckpoint when every step is damaged."""
        steps = self.all_steps()
        damaged: list[DamagedCheckpoint] = []
        for step in reversed(steps):
            try:
                state, data = self.restore(step, abstract_state)
            except DamagedCheckpoint as e:
                damaged.append(e)
                continue
            if damaged:
                moved = [self._set_aside(d.step) for d in damaged]
                if warn is not None:
                    names = ", ".join(str(d.step) for d in damaged)
                    warn(f"checkpoint step {names} is damaged ({damaged[0]}); resuming from step {step}, the "
                         f"newest intact one (the damaged step{'s' if len(moved) > 1 else ''} moved to "
                         f"{', '.join(moved)})")
            return step, state, data
        if damaged:
            raise DamagedCheckpoint(
                f"every checkpoint in {self.directory} is damaged (steps {steps}; newest: {damaged[0]}); "
                "use another workdir or config.init_checkpoint",
                damaged[0].step,
            )
        return None

    def _set_aside(self, step: int) -> str:
        """Renames a damaged step's directory to `<step>.damaged` (kept for
        inspection, no longer a step), so the resumed run can save that step anew."""
        src = os.path.join(self.directory, str(step))
        dst = f"{src}.damaged"
        n = 1
        while os.path.exists(dst):
            n += 1
            dst = f"{src}.damaged{n}"
        os.rename(src, dst)
        self._manager.reload()
        return dst

    def intact_before(self, step: int, abstract_state: TrainState) -> int | None:
        """The newest step before `step` that restores, else None."""
        for earlier in reversed([s for s in self.all_steps() if s < step]):
            try:
                self.restore(earlier, abstract_state)
            except DamagedCheckpoint:
                continue
            return earlier
        return None

    def _check_shapes(self, step: int, abstract_state: TrainState) -> None:
        try:
            meta = self._manager.item_metadata(step)["state"]
        except _READ_ERRORS as e:
            raise DamagedCheckpoint(f"{self.directory}/{step}/state is unreadable ({_first_line(e)})", step) from None
        tree = getattr(meta, "tree", meta)
        if not tree or "params" not in tree:
            raise DamagedCheckpoint(f"{self.directory}/{step}/state has no readable 'params' metadata", step)
        saved = jax.tree_util.tree_flatten_with_path(tree)[0]
        saved = {jax.tree_util.keystr(p): tuple(m.shape) for p, m in saved if hasattr(m, "shape")}
        wanted = jax.tree_util.tree_flatten_with_path(abstract_state.to_dict())[0]
        for path, leaf in wanted:
            key = jax.tree_util.keystr(path)
            if key.startswith("['opt_state']"):
                continue  # differs only if params do, or with another optimizer (reported below)
            if key not in saved:
                raise CheckpointError(
                    f"{self.directory}/{step} has no {key}; it was written by another model "
                    "(use another workdir, or config.init_checkpoint to start from it)"
                )
            if saved[key] != tuple(leaf.shape):
                raise CheckpointError(
                    f"{self.directory}/{step}: {key} has shape {saved[key]} but the config's model "
                    f"needs {tuple(leaf.shape)}; use another workdir or config.init_checkpoint"
                )

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._manager.close()


def _first_line(error: Exception) -> str:
    """An error's first line, cut short: TensorStore messages run long."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
