"""Fine-tuning heads, losses and jitted steps (JAX only: no TensorFlow here).

The train step is the engine's (`bert_jax.train.engine`) with the head's
loss (`task_loss`), on the same `TrainState` as pre-training.

A batch is a dict of NumPy/JAX arrays, `[batch, seq]` int32 `input_ids`,
`input_mask`, `segment_ids`, plus per head:

| head | targets | weights |
|---|---|---|
| `classification` | `labels [batch]` int32 | `weights [batch]` float32 |
| `regression` | `labels [batch]` float32 | `weights [batch]` |
| `token` | `labels [batch, seq]` int32 (first sub-token of a word) | `weights [batch, seq]` (0 elsewhere) |
| `span` | `start_positions`, `end_positions [batch]` int32 | `weights [batch]` |

A weight of 0 marks padding (examples added to fill the last batch, or
sub-tokens that carry no label); losses are weighted means.

A packed batch (`bert_jax.finetune.packing`, sequence heads only) has its
inputs `[rows, width]` with several examples a row, plus `document_ids [rows,
width]` and `pool_positions [batch]`; targets and outputs stay `[batch]`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from bert_jax import losses
from bert_jax.errors import CheckpointError
from bert_jax.model import (
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    ModelConfig,
)
from bert_jax.train import engine, sharding
from bert_jax.train.optim import Optimizer
from bert_jax.train.state import TrainState

HEADS = ("classification", "regression", "token", "span")
# The parameter subtree each head adds beside `bert`.
HEAD_PARAMS = {
    "classification": "classifier",
    "regression": "classifier",
    "token": "classifier",
    "span": "qa_outputs",
}
INPUTS = ("input_ids", "input_mask", "segment_ids")
# A packed batch's extra inputs (`bert_jax.finetune.packing`): its `[rows, seq]`
# inputs hold several examples a row; the outputs are one per example.
PACKED_INPUTS = ("document_ids", "pool_positions")


def make_model(head: str, cfg: ModelConfig) -> nn.Module:
    """The Flax model for a head; `cfg.num_labels` sizes the classifier (1 for regression)."""
    if head in ("classification", "regression"):
        return BertForSequenceClassification(cfg)
    if head == "token":
        return BertForTokenClassification(cfg)
    if head == "span":
        return BertForQuestionAnswering(cfg)
    raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")


def init_params(
    model: nn.Module, seq_len: int, rng: jax.Array, pretrained: dict[str, Any], mesh: Mesh, rules=sharding.RULES
) -> dict[str, Any]:
    """Parameters of `model`, placed over `mesh` by the rule table `rules`
    (the step's own, so the two agree): every `bert/...` leaf that `pretrained` has comes from it, the rest
    (the task head; the pooler when the checkpoint has none) is freshly
    initialised."""
    ids = jnp.zeros((1, seq_len), jnp.int32)

    def init(key):
        return model.init(key, ids, jnp.ones_like(ids), ids)["params"]

    shardings = sharding.logical_shardings(jax.eval_shape(init, rng), mesh, rules)
    fresh = jax.jit(lambda key: nn.meta.unbox(init(key)), out_shardings=shardings)(rng)
    loaded = _with_pooler_from_mlm(pretrained, model.cfg.pooler)
    missing: list[str] = []
    merged = {**fresh, "bert": _merge(fresh["bert"], loaded, "bert", missing)}
    if loaded and missing:  # loaded {}: a randomly initialised encoder (init=random, a fresh student)
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        # Started from random values, they would fine-tune a model that is not the checkpoint.
        raise CheckpointError(
            f"the checkpoint lacks encoder parameters its own model config needs ({shown}); it is incomplete "
            "or was written for another architecture: convert or save it again"
        )
    return jax.device_put(merged, shardings)


# Encoder parameters a checkpoint may lack, freshly initialised then: the
# pooler (masked-LM checkpoints such as RoBERTa's have none).
OPTIONAL_ENCODER_PARAMS = ("bert/pooler",)


def _with_pooler_from_mlm(pretrained: dict[str, Any], pooler: str) -> dict[str, Any]:
    """`pretrained["bert"]`, with a "head" pooler (ModernBERT's prediction
    head) the checkpoint lacks taken from its MLM head's transform: transformers
    names both `head.dense`/`head.norm`, so ModernBertForSequenceClassification
    loaded from a masked-LM checkpoint starts from the MLM transform too."""
    bert, mlm = pretrained["bert"], pretrained.get("mlm")
    if pooler != "head" or not mlm or "pooler" in bert:
        return bert
    return {**bert, "pooler": {k: v for k, v in mlm.items() if k in ("dense", "LayerNorm")}}


def _merge(fresh: dict, loaded: dict, where: str, missing: list[str]) -> dict:
    """`fresh` with every leaf `loaded` has; appends to `missing` the paths
    (below `where`) it lacks, beyond OPTIONAL_ENCODER_PARAMS."""
    out = {}
    for key, value in fresh.items():
        if key not in loaded:
            if f"{where}/{key}" not in OPTIONAL_ENCODER_PARAMS:
                missing.append(f"{where}/{key}")
            out[key] = value
        elif isinstance(value, dict):
            out[key] = _merge(value, loaded[key], f"{where}/{key}", missing)
        else:
            if tuple(value.shape) != tuple(loaded[key].shape):
                raise CheckpointError(
                    f"checkpoint parameter {where}/{key} has shape {tuple(loaded[key].shape)} but its model config "
                    f"needs {tuple(value.shape)}; the checkpoint's params and model_config.json disagree: "
                    "convert or save it again"
                )
            out[key] = np.asarray(loaded[key], value.dtype)
    return out


def loss_fn(head: str, outputs, batch: dict[str, jax.Array]) -> jax.Array:
    """The task head's loss (`bert_jax.losses.task_loss`)."""
    return losses.task_loss(head, outputs, batch)


def _apply(model, params, batch, **kw):
    packed = {k: batch[k] for k in PACKED_INPUTS if k in batch}
    return model.apply({"params": params}, *(batch[k] for k in INPUTS), **packed, **kw)


def under_mesh(jitted, mesh: Mesh | None, rules=sharding.RULES):
    """`jitted` traced with `mesh` and the rule table in force
    (`sharding.MeshJitted`), so the model's activation constraints apply;
    unchanged without a mesh (one device)."""
    return jitted if mesh is None else sharding.MeshJitted(jitted, mesh, rules)


def task_loss(model: nn.Module, head: str):
    """The fine-tuning job's `loss_fn(params, batch, key) -> (loss, {"loss"})`
    for the engine (`bert_jax.train.engine`): the head's weighted mean loss
    with dropout keyed by `key`."""

    def task_loss_fn(params, batch: dict[str, jax.Array], key: jax.Array):
        out = _apply(model, params, batch, deterministic=False, rngs={"dropout": key})
        loss = loss_fn(head, out, batch)
        return loss, {"loss": loss}

    return task_loss_fn


def make_train_step(model: nn.Module, head: str, optimizer: Optimizer | optax.GradientTransformation,
                    mesh: Mesh | None = None, rules=sharding.RULES, state_shardings: TrainState | None = None,
                    accum_steps: int = 1):
    """The engine's jitted `step(state, batch, rng) -> (state, metrics)` of
    `task_loss` on a `TrainState` (`engine.init_state` makes one from
    params): dropout on, key `fold_in(rng, state.step)`, the state donated,
    the non-finite guard. With `mesh` (and the state's shardings), traced
    under it and `rules`. Metrics: loss, grad_norm, nonfinite, real_tokens
    [, learning_rate]."""
    return engine.make_step(task_loss(model, head), optimizer, mesh=mesh, state_shardings=state_shardings,
                            accum_steps=accum_steps, rules=rules)


def make_predict_step(model: nn.Module, head: str, mesh: Mesh | None = None, rules=sharding.RULES):
    """jitted `(params, batch) -> outputs` without dropout: `[batch, labels]`
    logits, `[batch, seq, labels]` for tokens, or `(start, end)` `[batch, seq]`;
    with `mesh`, traced under it and `rules` (`under_mesh`)."""
    return under_mesh(jax.jit(functools.partial(_apply, model)), mesh, rules)
