"""A TensorFlow SavedModel that classifies raw UTF-8 strings.

The signature `serving_default(text: tf.string [n])` returns `labels`
(tf.string [n], the task's label names), `label_ids` (int32 [n]) and
`probabilities` (float32 [n, num_labels]). Inside the graph: the WordPiece
tokenizer (`WordPieceTokenizer.tf_encode`), truncation to `max_seq_length - 2`
pieces, `[CLS] ... [SEP]`, padding to `max_seq_length` (as fine-tuning's
`encode`, so the ids equal its predict mode's), then the JAX model converted
with `jax.experimental.jax2tf` (parameters as `tf.Variable`s). Serving needs
no Python preprocessing.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from bert_jax import checkpoints
from bert_jax.compress import models
from bert_jax.errors import UserError
from bert_jax.finetune import tasks, trainer
from bert_jax.finetune.config import finetune_config
from bert_jax.model import BertForSequenceClassification, ModelConfig
from bert_jax.tokenization import WordPieceTokenizer

FORMATS = ("saved_model",)


def tf_inputs(tokenizer: WordPieceTokenizer, texts: tf.Tensor, max_seq_length: int) -> dict[str, tf.Tensor]:
    """`[CLS] pieces [SEP]` padded: tf.string [n] -> int32 `input_ids`,
    `input_mask`, `segment_ids`, each [n, max_seq_length], in TF ops."""
    pieces = tokenizer.tf_encode(texts)[:, : max_seq_length - 2]
    n = pieces.nrows()
    cls = tf.fill([n, 1], tf.constant(tokenizer.cls_id, tf.int64))
    sep = tf.fill([n, 1], tf.constant(tokenizer.sep_id, tf.int64))
    ids = tf.concat([cls, pieces, sep], axis=1)
    shape = [None, max_seq_length]
    input_ids = ids.to_tensor(default_value=tokenizer.pad_id, shape=shape)
    input_mask = tf.ones_like(ids).to_tensor(default_value=0, shape=shape)
    return {
        "input_ids": tf.cast(input_ids, tf.int32),
        "input_mask": tf.cast(input_mask, tf.int32),
        "segment_ids": tf.zeros_like(input_mask, tf.int32),
    }


class ServingModule(tf.Module):
    """The exported module: tokenizer resources, parameters, `serve`."""

    def __init__(self, cfg: ModelConfig, params: Any, tokenizer: WordPieceTokenizer, labels: list[str],
                 max_seq_length: int):
        super().__init__()
        model = BertForSequenceClassification(cfg)
        self._tokenizer = tokenizer
        # Tracked so the SavedModel holds the vocab trie and the lower-casing table.
        self._wordpiece, self._fixes = tokenizer.graph_resources
        self._params = jax.tree.map(lambda x: tf.Variable(np.asarray(x), trainable=False), params)
        self._labels = tf.constant(labels, tf.string)
        self._max_seq_length = max_seq_length
        inputs = f"(b, {max_seq_length})"
        self._logits = jax2tf.convert(
            lambda p, i, m, s: model.apply({"params": p}, i, m, s),
            polymorphic_shapes=[None, inputs, inputs, inputs],
            with_gradient=False,
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")], autograph=False)
    def serve(self, text):
        inputs = tf_inputs(self._tokenizer, text, self._max_seq_length)
        logits = self._logits(self._params, inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"])
        label_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
        return {
            "labels": tf.gather(self._labels, label_ids),
            "label_ids": label_ids,
            "probabilities": tf.nn.softmax(logits, axis=-1),
        }


def export_saved_model(
    output: str | pathlib.Path,
    cfg: ModelConfig,
    params: Any,
    tokenizer: WordPieceTokenizer,
    labels: list[str],
    max_seq_length: int,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes the SavedModel directory atomically; returns its path."""
    if "classifier" not in params:
        raise UserError("the model has no classification head (params/classifier); export a fine-tuned model")
    if len(labels) != cfg.num_labels:
        raise UserError(f"{len(labels)} label names for a {cfg.num_labels}-way classifier")
    module = ServingModule(cfg, params, tokenizer, labels, max_seq_length)
    with checkpoints.atomic_directory(output, overwrite) as tmp:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": module.serve})
    return pathlib.Path(output)


def run(workdir: str, output: str, fmt: str = "saved_model", max_seq_length: int | None = None,
        overwrite: bool = False) -> dict:
    """`bert-jax export`: a fine-tuning/distillation workdir (or a checkpoint
    with a classifier) to a SavedModel; returns a summary."""
    if fmt not in FORMATS:
        raise UserError(f"--format={fmt!r} is not supported; expected one of {', '.join(FORMATS)}")
    cfg, params, meta, head = models.load_finetuned_classifier(workdir)
    labels = [str(x) for x in (head or {}).get("labels") or range(cfg.num_labels)]
    if (head or {}).get("task"):
        task = tasks.module_for(head["task"]).get_task(head["task"])
        if getattr(task, "text_b", None):
            raise UserError(f"{head['task']} takes sentence pairs; export serves single-sentence tasks only")
    try:
        _, _, seq_len = models.task_settings(workdir, head, "-", max_seq_length)
    except UserError:
        seq_len = max_seq_length or 128
    tokenizer = trainer.load_tokenizer(finetune_config(), meta, meta["source"])
    trainer.check_vocab(cfg, tokenizer, meta["source"])
    export_saved_model(output, cfg, jax.tree.map(jnp.asarray, params), tokenizer, labels, seq_len, overwrite)
    return {"output": str(output), "format": fmt, "source": meta["source"], "labels": labels,
            "max_seq_length": seq_len, "num_layers": cfg.num_layers}
