"""Training checkpoints: WORKDIR/checkpoints/<step>/{state,data} via orbax.

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

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from bert_jax.errors import CheckpointError
from bert_jax.train.state import TrainState

log = logging.getLogger(__name__)


def _is_remote(path: str) -> bool:
    return "://" in str(path)


class Checkpointer:
    """Save every N steps, keep the last K, restore onto any shardings."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
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
                item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()},
            )
        except OSError as e:
            raise CheckpointError(f"cannot create checkpoint directory {self.directory} ({e})") from None
        self._pending: int | None = None

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: TrainState, data_state: dict[str, Any]) -> None:
        """Starts an asynchronous save of `state` and `data_state` at `step`;
        a failure (disk full, permissions) is a CheckpointError naming the
        last complete step, which stays on disk."""
        self._check_previous()
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state.to_dict()), data=ocp.args.JsonSave(data_state)
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
            f"saving checkpoint step {step} in {self.directory} failed ({error}); {kept}; "
            "free disk space or fix permissions and rerun to resume"
        ) from None

    def wait(self) -> None:
        """Blocks until the last save is on disk (raises if it failed)."""
        self._check_previous()

    def restore(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict[str, Any]]:
        """(state placed with `abstract_state`'s shardings, data position).
        A checkpoint of another model shape raises CheckpointError naming the
        first parameter that differs."""
        self._check_shapes(step, abstract_state)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state.to_dict()), data=ocp.args.JsonRestore()
        )
        try:
            restored = self._manager.restore(step, args=args)
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{self.directory}/{step} cannot be restored ({e})") from None
        return TrainState.from_dict(restored["state"]), dict(restored["data"] or {})

    def _check_shapes(self, step: int, abstract_state: TrainState) -> None:
        try:
            meta = self._manager.item_metadata(step)["state"]
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{self.directory}/{step}/state is unreadable ({e})") from None
        saved = jax.tree_util.tree_flatten_with_path(getattr(meta, "tree", meta))[0]
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
