"""Probing during pre-training: fine-tune a copy of the current weights on a
small downstream set and report its dev metric.

The pre-training loop calls, every `probe.every_steps` steps (host side,
between train steps):

    from bert_jax.finetune.probe import run_probe
    metrics = run_probe(model_cfg, state.params, config.probe, vocab_file, lower_case)
    # e.g. {"task": "sst2", "accuracy": 0.81, "steps": 200, "train_examples": 2000}

`params` may be sharded, boxed or scanned: the probe gathers them to host
NumPy first and never touches the caller's arrays.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from bert_jax import checkpoints
from bert_jax.errors import ConfigError
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import tasks, trainer
from bert_jax.model import ModelConfig


def probe_config(probe_cfg, vocab_file: str, lower_case: bool):
    """A fine-tuning config for the probe: the task's defaults, the probe's
    task/data_dir/train_examples/steps, batch 32, seq 128, one mesh over all
    devices."""
    if not probe_cfg.data_dir:
        raise ConfigError("probe.data_dir is empty; point it at the GLUE folder (holding SST-2/train.tsv)")
    c = ft_config.finetune_config(probe_cfg.task)
    c.data_dir = probe_cfg.data_dir
    c.train_examples = int(probe_cfg.train_examples)
    c.total_steps = int(probe_cfg.steps)
    c.vocab_file = vocab_file
    c.lower_case = bool(lower_case)
    c.learning_rate = float(probe_cfg.get("learning_rate", 5e-5))
    c.max_seq_length = int(probe_cfg.get("max_seq_length", 128))
    c.batch_size = int(probe_cfg.get("batch_size", 32))
    c.eval_batch_size = int(probe_cfg.get("eval_batch_size", 64))
    c.log_every_steps = max(int(probe_cfg.steps), 1)
    c.keep_best = False
    return c


def run_probe(model_cfg: ModelConfig, params: Any, probe_cfg, vocab_file: str, lower_case: bool) -> dict:
    """Fine-tunes a copy of `params` on `probe_cfg.task` (GLUE) and returns
    its dev metrics plus `task`, `steps`, `train_examples`, `seconds`."""
    start = time.time()
    config = probe_config(probe_cfg, vocab_file, lower_case)
    if tasks.family(config.task) != "glue":
        raise ConfigError(f"probe.task={probe_cfg.task!r}; the probe runs GLUE tasks (e.g. sst2)")
    tokenizer = trainer.load_tokenizer(config, {}, "the probed model")
    trainer.check_vocab(model_cfg, tokenizer, "the probed model")
    prepared = tasks.prepare(config, tokenizer)
    host = checkpoints.numpy_params(jax.device_get(params))
    unrolled = model_cfg.replace(scan_layers=False)
    pretrained = checkpoints.with_layer_layout(host, unrolled)
    best, _, _, _ = trainer.fine_tune(config, prepared, unrolled, pretrained, config.seed)
    return {
        "task": prepared.task,
        **best,
        "steps": config.total_steps,
        "train_examples": len(prepared.train["input_ids"]),
        "seconds": round(time.time() - start, 1),
    }
