"""Parameter trees in orbax: writing our `params/` folder, and restoring any
orbax tree (or one subtree of it, such as a TrainState's `params`) as NumPy."""

from __future__ import annotations

import errno
import logging
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from bert_jax.checkpoints.params import Params
from bert_jax.errors import CheckpointError


def save_params(path: pathlib.Path, params: Params) -> None:
    """Writes `params` with orbax; its write errors (TensorStore reports a
    full disk as ValueError) become OSError for `atomic_directory`, and its
    absl error logs stay off the console unless BERT_JAX_TRACEBACK is set."""
    absl_logger = logging.getLogger("absl")
    quiet = not os.environ.get("BERT_JAX_TRACEBACK")
    level = absl_logger.level
    if quiet:
        absl_logger.setLevel(logging.CRITICAL)
    try:
        import orbax.checkpoint as ocp  # ~0.5 s to import: only where an orbax tree is written

        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(path, params)
        checkpointer.wait_until_finished()
    except ValueError as e:
        first = (str(e).strip().splitlines() or ["ValueError"])[0][:200]
        raise OSError(errno.EIO, first) from None
    finally:
        if quiet:
            absl_logger.setLevel(level)


def restore_tree(path: pathlib.Path, subtree: str | None = None) -> Params:
    """Restores an orbax pytree (only `subtree` of it, when given) as NumPy."""
    try:
        return _strip_box_values(_orbax_restore(path, subtree))
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:  # orbax reports a missing/corrupt tree as these
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path} is not a readable orbax checkpoint ({first})") from None


def _orbax_restore(path: pathlib.Path, subtree: str | None) -> Params:
    import orbax.checkpoint as ocp  # ~0.5 s to import: only where an orbax tree is read

    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(path).item_metadata
    tree = getattr(metadata, "tree", metadata)
    if not tree:
        raise CheckpointError(
            f"{path} is not a readable orbax checkpoint (its array metadata is unreadable or empty); it is damaged"
        )
    if subtree is not None:
        if not isinstance(tree, Mapping) or subtree not in tree:
            raise CheckpointError(f"{path} holds no {subtree!r} entry; found {sorted(tree or {})}")
        tree = {subtree: tree[subtree]}
    item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    restore_args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    args = ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=subtree is not None)
    restored = checkpointer.restore(path, args=args)
    return restored[subtree] if subtree is not None else restored


def _strip_box_values(tree: Any) -> Any:
    """A boxed parameter (`nn.Partitioned`) saves as `{"value": array}`."""
    if isinstance(tree, Mapping):
        if set(tree) == {"value"} and not isinstance(tree["value"], Mapping):
            return np.asarray(tree["value"], np.float32)
        return {k: _strip_box_values(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)
