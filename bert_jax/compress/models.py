"""Sequence classifiers as the compression jobs see them.

* `load_finetuned_classifier(path)`: a fine-tuning/distillation workdir or a
  checkpoint, checked to have a classification head.
* `HeadPrunedClassifier` / `head_pruned_config`: the shared
  `BertForSequenceClassification` with `ModelConfig.heads_per_layer` set, so
  layers keep different numbers of attention heads (of the original width).
* `examples_per_second`: measured inference throughput on this host.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bert_jax import checkpoints
from bert_jax.errors import UserError
from bert_jax.finetune import step as ft_step
from bert_jax.finetune import tasks, trainer
from bert_jax.finetune.config import finetune_config
from bert_jax.model import BertForSequenceClassification, ModelConfig

Params = dict[str, Any]
# (input_ids, input_mask, segment_ids) int32 [batch, seq] -> logits float32 [batch, labels]
LogitsFn = Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]


def require_classifier(params: Params, source: str) -> None:
    """Raises UserError unless `params` has a sequence-classification head."""
    if "classifier" not in params:
        raise UserError(
            f"{source} has no classification head (params/classifier); pass a fine-tuning "
            "workdir or checkpoint saved with its classifier"
        )


def resolve_checkpoint(path: str | pathlib.Path) -> pathlib.Path:
    """A fine-tuning or distillation workdir means its `best/` checkpoint;
    anything else is itself."""
    path = pathlib.Path(path)
    best = path / trainer.BEST_DIR
    return best if (best / trainer.HEAD_FILE).is_file() else path


def load_finetuned_classifier(path: str | pathlib.Path) -> tuple[ModelConfig, Params, dict, dict | None]:
    """(architecture, params in the canonical layout, meta, head.json or
    None) of a workdir or checkpoint that has a sequence-classification head."""
    source = resolve_checkpoint(path)
    head = None
    if (source / trainer.HEAD_FILE).is_file():
        cfg, params, meta, head = trainer.load_finetuned(source)
    else:
        cfg, params, meta = checkpoints.load_model(source)
    require_classifier(params, str(source))
    return cfg, params, {**meta, "source": str(source)}, head


def classifier_logits_fn(cfg: ModelConfig) -> LogitsFn:
    """Jitted deterministic forward pass of `BertForSequenceClassification`."""
    model = BertForSequenceClassification(cfg)

    @jax.jit
    def logits(params, input_ids, input_mask, segment_ids):
        return model.apply({"params": params}, input_ids, input_mask, segment_ids)

    return logits


def task_settings(workdir: str | pathlib.Path, head: dict | None, data_dir: str | None,
                  max_seq_length: int | None) -> tuple[str, str, int]:
    """(task, data_dir, max_seq_length) for evaluating a fine-tuned model:
    explicit values first, then WORKDIR/config.json, then head.json's task."""
    saved = {}
    config_file = pathlib.Path(workdir) / trainer.CONFIG_FILE
    if config_file.is_file():
        saved = json.loads(config_file.read_text())
    task = (head or {}).get("task") or saved.get("task")
    if not task:
        raise UserError(f"{workdir}: no head.json or config.json names the task; pass a fine-tuning workdir")
    data_dir = data_dir or saved.get("data_dir")
    if not data_dir:
        raise UserError(f"{workdir}/config.json does not name the data; pass --data_dir=GLUE_DIR")
    return task, data_dir, int(max_seq_length or saved.get("max_seq_length") or 128)


def write_run_config(output: str | pathlib.Path, workdir: str | pathlib.Path, task: str, data_dir: str,
                     max_seq_length: int, **settings) -> None:
    """OUTPUT/config.json: the task settings `task_settings` reads back (so the
    output serves as the --workdir of the next command, as a fine-tuning
    workdir does) and the job's own `settings`."""
    config = {"task": task, "data_dir": str(data_dir), "max_seq_length": int(max_seq_length),
              "workdir": str(workdir), **settings}
    trainer.write_json(pathlib.Path(output) / trainer.CONFIG_FILE, config)


def prepare_task(task: str, data_dir: str, max_seq_length: int, tokenizer, train_examples: int) -> tasks.Prepared:
    """Fine-tuning's features of `task`: dev sets, and the first
    `train_examples` training rows (calibration / importance data)."""
    config = finetune_config(task)
    config.data_dir, config.max_seq_length, config.train_examples = data_dir, max_seq_length, max(train_examples, 1)
    return tasks.prepare(config, tokenizer)


def dev_scores(predict_fn: Callable[[Any, dict], Any], params: Any, prepared: tasks.Prepared,
               batch_size: int = 64) -> dict[str, float]:
    """The task's dev metrics (fine-tuning's names and scoring) of
    `predict_fn(params, batch) -> logits [batch, labels]`, on whatever device
    `params` live (no mesh needed: quantised and pruned models run here too)."""
    scores = {}
    for name, ev in prepared.dev.items():
        inputs = {k: ev.features[k] for k in ft_step.INPUTS}
        outs = [np.asarray(predict_fn(params, batch))[:valid] for batch, valid in trainer.eval_batches(inputs, batch_size)]
        scores[name] = ev.score(np.concatenate(outs))
    return trainer.dev_metrics(scores)


def batch_fn(logits: LogitsFn) -> Callable[[Any, dict], jax.Array]:
    """`(params, batch dict) -> logits` from `(params, ids, mask, segments) -> logits`."""
    return lambda params, batch: logits(params, batch["input_ids"], batch["input_mask"], batch["segment_ids"])


# --------------------------------------------------------------------------
# Per-layer head counts


def head_pruned_config(cfg: ModelConfig, heads: Sequence[int]) -> ModelConfig:
    """`cfg` whose layer i keeps `heads[i]` attention heads of the original
    width (`ModelConfig.heads_per_layer`; ConfigError for a wrong count)."""
    return cfg.replace(heads_per_layer=tuple(int(h) for h in heads))


def HeadPrunedClassifier(cfg: ModelConfig, heads: Sequence[int]) -> nn.Module:  # noqa: N802 (a model, by name)
    """`BertForSequenceClassification` with `heads[i]` attention heads in layer
    i: the one shared model under `head_pruned_config`. Inputs `[batch, seq]`
    int32; `logits [batch, num_labels]` float32; parameter names as the
    unpruned model's, the `heads` axis shrunk per layer."""
    return BertForSequenceClassification(head_pruned_config(cfg, heads))


# --------------------------------------------------------------------------
# Throughput


def random_batch(vocab_size: int, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Int32 `[batch, seq]` inputs of full length (the worst case for padding)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000 if vocab_size > 1000 else 1, vocab_size, (batch_size, seq_len), dtype=np.int32)
    return {
        "input_ids": ids,
        "input_mask": np.ones_like(ids),
        "segment_ids": np.zeros_like(ids),
    }


def examples_per_second(
    logits_fn: LogitsFn,
    params: Any,
    vocab_size: int,
    seq_len: int,
    batch_size: int = 32,
    runs: int = 7,
) -> float:
    """Median examples/s of `logits_fn` on one `[batch_size, seq_len]` batch,
    over `runs` timed calls after one compiling call, in this process."""
    batch = {k: jnp.asarray(v) for k, v in random_batch(vocab_size, batch_size, seq_len).items()}
    args = (batch["input_ids"], batch["input_mask"], batch["segment_ids"])
    jax.block_until_ready(logits_fn(params, *args))
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(logits_fn(params, *args))
        seconds.append(time.perf_counter() - start)
    return batch_size / statistics.median(seconds)


def batched(fn: Callable[..., np.ndarray], arrays: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    """`fn` over row chunks of `arrays` (the last padded to `batch_size` so one
    compiled shape serves all), concatenated; `fn` returns `[batch, ...]`."""
    n = len(arrays[0])
    outs = []
    for start in range(0, n, batch_size):
        chunk = [a[start : start + batch_size] for a in arrays]
        real = len(chunk[0])
        if real < batch_size:
            chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - real, 0)]) for c in chunk]
        outs.append(np.asarray(fn(*chunk))[:real])
    return np.concatenate(outs) if outs else np.zeros((0,))
