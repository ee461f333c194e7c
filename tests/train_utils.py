"""Shared by the training tests: a very small pre-training config and batches."""

from __future__ import annotations

import os
import pathlib
import signal

import jax
import numpy as np

from bert_jax import checkpoints
from bert_jax.config import model_section, pretrain_config
from bert_jax.model import BertForPreTraining, ModelConfig, dummy_pretraining_inputs

# 1 layer, hidden 32, 4 heads (divisible by tensor=4), vocab 128.
TINY_MODEL = dict(
    num_layers=1,
    hidden_size=32,
    num_heads=4,
    intermediate_size=64,
    vocab_size=128,
    max_position_embeddings=32,
)
SEQ, PRED, BATCH = 16, 4, 8


def tiny_config(**overrides):
    """A full pretrain config around the tiny model, synthetic data, constant LR."""
    c = pretrain_config("tiny")
    c.model = model_section("tiny", **TINY_MODEL)
    c.data.synthetic = True
    c.data.max_seq_length = SEQ
    c.data.max_predictions_per_seq = PRED
    c.batch_size = BATCH
    c.total_steps = 4
    c.log_every_steps = 1
    c.checkpoint_every_steps = 2
    c.eval_every_steps = 0
    c.eval_steps = 2
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 0
    c.optimizer.schedule = "constant"
    c.mesh.data = -1
    for key, value in overrides.items():
        node = c
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return c


CLI_TINY = [
    "--config.data.synthetic=True",
    f"--config.data.max_seq_length={SEQ}",
    f"--config.data.max_predictions_per_seq={PRED}",
    f"--config.batch_size={BATCH}",
    "--config.model.num_layers=1",
    "--config.model.hidden_size=32",
    "--config.model.num_heads=4",
    "--config.model.intermediate_size=64",
    "--config.model.vocab_size=128",
    "--config.model.max_position_embeddings=32",
    "--config.optimizer.warmup_steps=0",
    "--config.optimizer.schedule=constant",
    "--config.optimizer.learning_rate=0.001",
    "--config.log_every_steps=1",
    "--config.eval_every_steps=0",
    "--config.eval_steps=1",
]


def batch(seed: int = 0, batch_size: int = BATCH, seq: int = SEQ, pred: int = PRED, vocab: int = 128):
    """A NumPy pre-training batch (docs/design.md), all MLM weights 1."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, (batch_size, seq)).astype(np.int32)
    positions = np.sort(rng.choice(np.arange(1, seq), (batch_size, pred)), axis=1).astype(np.int32)
    return {
        "input_ids": ids,
        "input_mask": np.ones((batch_size, seq), np.int32),
        "segment_ids": (np.arange(seq)[None] >= seq // 2).repeat(batch_size, 0).astype(np.int32),
        "masked_lm_positions": positions,
        "masked_lm_ids": np.take_along_axis(ids, positions, 1),
        "masked_lm_weights": np.ones((batch_size, pred), np.float32),
        "next_sentence_labels": rng.integers(0, 2, batch_size).astype(np.int32),
    }


# Four sentences rotated into documents: a tiny real-text corpus for byte-level
# BPE vocabularies and create-data in the family tests.
SENTENCES = [
    "The keeper climbed the stairs of the lighthouse every evening.",
    "Ships passed the rocks safely because the lamp never failed.",
    "In winter the sea was grey, and the wind sang in the rails.",
    "He wrote each passing ship into a small leather book.",
]


def write_sentence_corpus(path, repeats: int) -> str:
    """Writes 4 rotated documents `repeats` times (blank-line separated); returns the path."""
    text = "\n\n".join(" ".join(SENTENCES[i:] + SENTENCES[:i]) for i in range(4)) * repeats + "\n"
    path.write_text(text)
    return str(path)


def save_random_checkpoint(root: pathlib.Path, vocab: list[str], num_layers: int = 2) -> pathlib.Path:
    """A randomly initialised BERT (hidden 32, 2 heads, intermediate 64, 32
    positions) over `vocab`, saved with its lower-cased vocab.txt as the
    checkpoint `root/ckpt`, the way fine-tuning tests start. Returns that path."""
    vocab_file = root / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = ModelConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_layers=num_layers,
        num_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    params = BertForPreTraining(cfg).init(jax.random.PRNGKey(0), **dummy_pretraining_inputs(1, 8, 2))
    checkpoints.save_model(root / "ckpt", cfg, params, vocab_file=vocab_file, lower_case=True)
    return root / "ckpt"


def tiny_finetune_config(config, ckpt, data_dir, /, **overrides):
    """`config` (a fine-tuning config) set to fine-tune `ckpt` on `data_dir`
    for 3 steps of 8 sequences of 16 tokens, then `overrides`."""
    config.update(
        dict(
            init_checkpoint=str(ckpt),
            data_dir=str(data_dir),
            max_seq_length=16,
            batch_size=8,
            eval_batch_size=8,
            total_steps=3,
            learning_rate=1e-3,
            log_every_steps=1,
        )
    )
    config.update(overrides)
    return config


class SignalAt:
    """A source (anything with `next`, `index` and `state`) that sends this
    process SIGTERM as its batch `index` is read: the loop runs that step,
    saves a checkpoint and stops."""

    def __init__(self, source, index):
        self.source, self.index = source, index

    def __next__(self):
        if self.source.index == self.index:
            os.kill(os.getpid(), signal.SIGTERM)
        return next(self.source)

    def state(self):
        return self.source.state()
