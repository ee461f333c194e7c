"""A pre-training workdir (`WORKDIR/config.json` +
`WORKDIR/checkpoints/<step>/state`) read as a model: only the TrainState's
`params` are restored, returned in the canonical layer layout with the
architecture of the run's `model` section (its execution keys ignored); a
damaged step is named with the newest intact one.
(Saving and resuming the whole TrainState is `bert_jax.train.resume`.)"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping

from bert_jax.checkpoints.files import (
    HF_CONFIG,
    VOCAB_FILE,
    checkpoint_meta,
    model_config_from_fields,
    read_json,
)
from bert_jax.checkpoints.orbax_io import restore_tree
from bert_jax.checkpoints.params import Params, check_shapes, with_layer_layout
from bert_jax.errors import CheckpointError
from bert_jax.model import ModelConfig

# In a training workdir: where library output about unreadable checkpoints goes.
ERROR_LOG = "checkpoint-errors.log"


@contextlib.contextmanager
def stderr_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Sends this process's stderr (file descriptor 2, where TensorStore's
    threads print tracebacks when reading a damaged checkpoint) to `path`
    for the block; the one-line error is printed after it. BERT_JAX_TRACEBACK
    set, or no `path`: stderr stays as it is."""
    if path is None or os.environ.get("BERT_JAX_TRACEBACK"):
        yield
        return
    existed = os.path.exists(path)
    try:
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(target, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)
        if not existed and os.path.getsize(path) == 0:
            os.remove(path)  # nothing was printed: no empty log left behind


def _steps(checkpoints_dir: pathlib.Path) -> list[int]:
    if not checkpoints_dir.is_dir():
        return []
    return sorted(
        int(p.name) for p in checkpoints_dir.iterdir() if p.name.isdigit() and (p / "state").is_dir()
    )


def load_workdir(workdir: pathlib.Path, step: int | None) -> tuple[ModelConfig, Params, dict]:
    config = read_json(workdir / HF_CONFIG)
    if not isinstance(config.get("model"), Mapping):
        raise CheckpointError(f"{workdir / HF_CONFIG} has no 'model' section; is this a bert-jax workdir?")
    cfg = model_config_from_fields(config["model"], workdir / HF_CONFIG)
    steps = _steps(workdir / "checkpoints")
    if not steps:
        raise CheckpointError(
            f"{workdir / 'checkpoints'} holds no saved step yet; train longer or pick another"
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise CheckpointError(f"{workdir / 'checkpoints'} has no step {step}; saved steps: {steps}")
    state_dir = workdir / "checkpoints" / str(step) / "state"
    with stderr_to(workdir / ERROR_LOG):
        try:
            params = restore_tree(state_dir, subtree="params")
        except CheckpointError as e:
            raise CheckpointError(_damaged_step_message(workdir, step, steps, e)) from None
    # The run's layout (stacked when it scanned its layers) -> the canonical one.
    params = with_layer_layout(params, cfg)
    check_shapes(params, cfg, str(state_dir))
    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    vocab = data.get("vocab_file") or None
    if not (vocab and pathlib.Path(vocab).is_file()):
        vocab = str(workdir / VOCAB_FILE) if (workdir / VOCAB_FILE).is_file() else None
    return cfg, params, checkpoint_meta("workdir", workdir, vocab, data.get("do_lower_case"), step=step)


def _damaged_step_message(workdir: pathlib.Path, step: int, steps: list[int], error: Exception) -> str:
    """Names a damaged step and the newest earlier one whose params restore."""
    for earlier in reversed([s for s in steps if s < step]):
        try:
            restore_tree(workdir / "checkpoints" / str(earlier) / "state", subtree="params")
        except CheckpointError:
            continue
        return (
            f"checkpoint step {step} of {workdir} is damaged ({error}); step {earlier} is intact: "
            f"pass the path {workdir / 'checkpoints' / str(earlier)} instead"
        )
    return f"checkpoint step {step} of {workdir} is damaged ({error}); no earlier step is intact"
