"""The pre-training step: MLM + NSP/SOP loss on the one engine.

Pre-training is a loss function (`pretraining_loss`) handed to the step
builder every job shares (`bert_jax.train.engine`): `make_train_step(...)`
jits `train_step(state, batch, rng) -> (state, metrics)` once, with
explicit in/out shardings and the state donated. `rng` is the run's base
key; the dropout key of a step is `fold_in(rng, state.step)`, so a resumed
run draws the same dropout masks as one that never stopped. Gradient
accumulation, the non-finite guard (the update of a step with a NaN/Inf
loss is skipped and `metrics["nonfinite"]` is 1; the loop then stops,
on_nan="stop", or goes on, on_nan="skip") and tracing under the mesh and
the rule table are the engine's.

General distillation (`MlmDistill`): a frozen teacher's forward pass runs
inside the same step on the same batch; the MLM loss becomes alpha * T^2 *
KL(teacher_T || student_T) + (1 - alpha) * CE(labels) over the masked
positions (`bert_jax.losses.mlm_distill_metrics`). The teacher's parameters
are the engine's `frozen` argument, sharded by the same rule table and
bound, so the step is still called as `train_step(state, batch, rng)`.

(The step runs under the mesh and the rule table so the model's activation
constraints take effect on every mesh. Before they did, XLA's SPMD
partitioner got the last layer at the read positions wrong on 3-axis meshes;
tests/test_activation_sharding.py compares a 2x2x2 step with one device.)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from bert_jax import losses
from bert_jax.errors import ConfigError
from bert_jax.model import BertForPreTraining, ModelConfig
from bert_jax.train import engine
from bert_jax.train import sharding as sharding_lib
from bert_jax.train.optim import Optimizer
from bert_jax.train.sharding import MeshJitted
from bert_jax.train.state import TrainState

Batch = dict[str, jax.Array]


def _forward(
    model_cfg: ModelConfig, params, batch: Batch, deterministic: bool, key=None
) -> dict[str, jax.Array]:
    """The model on a batch; packed rows (a `document_ids` key, create-data
    mode "packed") attend within each document only."""
    document_ids = batch.get("document_ids")
    if document_ids is not None and model_cfg.pair_head != "none":
        raise ConfigError(packed_pair_head_message(model_cfg.pair_head))
    rngs = None if deterministic else {"dropout": key}
    return BertForPreTraining(model_cfg).apply(
        {"params": params},
        batch["input_ids"],
        batch["input_mask"],
        batch["segment_ids"],
        batch["masked_lm_positions"],
        deterministic=deterministic,
        document_ids=document_ids,
        rngs=rngs,
    )


def packed_pair_head_message(pair_head: str) -> str:
    """The one line refusing a sentence-pair head on packed rows."""
    return (
        f"the training data holds packed rows (document_ids: several documents per row) but "
        f"model.pair_head={pair_head!r}; packed rows are MLM-only (no sentence pairs): set model.pair_head=none, "
        "or create the data without --packed"
    )


@dataclasses.dataclass(frozen=True)
class MlmDistill:
    """General distillation: soft MLM targets from a frozen teacher whose
    `teacher_cfg` shares the student's vocabulary. `alpha` weights the soft
    term (T^2-scaled KL at `temperature`), 1 - alpha the hard MLM loss."""

    teacher_cfg: ModelConfig
    temperature: float = 2.0
    alpha: float = 0.5


def pretraining_loss(model_cfg: ModelConfig, distill: MlmDistill | None = None):
    """The pre-training job's `loss_fn(params, batch, key[, teacher_params])
    -> (loss, metrics)` for the engine (`bert_jax.train.engine`): MLM (+
    NSP/SOP) on `batch` (docs/design.md batch format), with `distill` the
    MLM term mixed with the KL to the frozen teacher's soft targets."""

    def loss_fn(params, batch: Batch, key, teacher_params=None) -> tuple[jax.Array, dict[str, jax.Array]]:
        outputs = _forward(model_cfg, params, batch, deterministic=False, key=key)
        sums = losses.pretraining_sums(outputs, batch, pair_head=model_cfg.pair_head != "none")
        metrics = losses.pretraining_metrics(sums)
        if distill is not None:
            teacher = _forward(distill.teacher_cfg, teacher_params, batch, deterministic=True)
            teacher_logits = jax.lax.stop_gradient(teacher["mlm_logits"])
            kl = losses.mlm_kl_sum(outputs["mlm_logits"], teacher_logits, batch["masked_lm_weights"],
                                   distill.temperature)
            metrics = losses.mlm_distill_metrics(metrics, kl, sums["mlm_weight_sum"], distill.temperature,
                                                 distill.alpha)
        return metrics["loss"], metrics

    return loss_fn


def train_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    teacher_params=None,
    *,
    model_cfg: ModelConfig,
    tx: optax.GradientTransformation,
    schedule=None,
    accum_steps: int = 1,
    distill: MlmDistill | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step on a global batch (docs/design.md batch format):
    `engine.train_step` of `pretraining_loss` (unjitted).

    Metrics (scalars): loss, mlm_loss, mlm_accuracy, [nsp_loss, nsp_accuracy],
    grad_norm, learning_rate (of this step), nonfinite (1.0 if skipped),
    real_tokens (non-padding tokens of the global batch, for real tokens/s);
    with `distill` (and the teacher's `teacher_params`) also mlm_kl."""
    return engine.train_step(state, batch, rng, teacher_params, loss_fn=pretraining_loss(model_cfg, distill),
                             tx=tx, schedule=schedule, accum_steps=accum_steps)


def eval_step(state_or_params, batch: Batch, *, model_cfg: ModelConfig) -> dict[str, jax.Array]:
    """Deterministic forward pass; returns `losses.pretraining_sums` (add them
    over batches, then `losses.pretraining_metrics`)."""
    params = state_or_params.params if isinstance(state_or_params, TrainState) else state_or_params
    outputs = _forward(model_cfg, params, batch, deterministic=True)
    return losses.pretraining_sums(outputs, batch, pair_head=model_cfg.pair_head != "none")


def make_train_step(
    model_cfg: ModelConfig,
    optimizer: Optimizer | optax.GradientTransformation,
    mesh: Mesh,
    state_shardings: TrainState,
    batch_sharding=None,
    *,
    accum_steps: int = 1,
    rules=sharding_lib.RULES,
    distill: MlmDistill | None = None,
    teacher_params=None,
    teacher_shardings=None,
) -> MeshJitted:
    """`train_step(state, batch, rng) -> (state, metrics)` jitted once with the
    state's shardings in and out, the batch split over data x fsdp, metrics
    replicated, and the input state donated (its buffers are reused).
    With `distill`, `teacher_params` (placed with `teacher_shardings`, not
    donated, never updated) are bound as the step's last argument."""
    if distill is not None and (teacher_params is None or teacher_shardings is None):
        raise ValueError("distill needs teacher_params and teacher_shardings")
    return engine.make_step(
        pretraining_loss(model_cfg, distill),
        optimizer,
        mesh=mesh,
        state_shardings=state_shardings,
        batch_sharding=batch_sharding or sharding_lib.batch_sharding(mesh),
        accum_steps=accum_steps,
        rules=rules,
        frozen=teacher_params if distill is not None else None,
        frozen_shardings=teacher_shardings,
    )


def make_eval_step(
    model_cfg: ModelConfig, mesh: Mesh, params_shardings, batch_sharding=None, *, rules=sharding_lib.RULES
) -> MeshJitted:
    """`eval_step(params, batch) -> sums` jitted with the params' shardings."""
    batch_sharding = batch_sharding or sharding_lib.batch_sharding(mesh)
    jitted = jax.jit(
        functools.partial(eval_step, model_cfg=model_cfg),
        in_shardings=(params_shardings, batch_sharding),
        out_shardings=sharding_lib.replicated(mesh),
    )
    return MeshJitted(jitted, mesh, rules)


def abstract_batch(global_batch: int, seq_len: int, max_predictions: int, batch_sharding) -> Batch:
    """The pre-training batch (docs/design.md) as ShapeDtypeStructs with the batch sharding."""
    shapes = {
        "input_ids": ((global_batch, seq_len), jnp.int32),
        "input_mask": ((global_batch, seq_len), jnp.int32),
        "segment_ids": ((global_batch, seq_len), jnp.int32),
        "masked_lm_positions": ((global_batch, max_predictions), jnp.int32),
        "masked_lm_ids": ((global_batch, max_predictions), jnp.int32),
        "masked_lm_weights": ((global_batch, max_predictions), jnp.float32),
        "next_sentence_labels": ((global_batch,), jnp.int32),
    }
    return {k: jax.ShapeDtypeStruct(s, d, sharding=batch_sharding) for k, (s, d) in shapes.items()}


def make_aot_step(
    model_cfg: ModelConfig,
    optimizer: Optimizer | optax.GradientTransformation,
    mesh: Mesh,
    global_batch: int,
    seq_len: int,
    max_predictions: int,
    *,
    accum_steps: int = 1,
    rules=sharding_lib.RULES,
) -> tuple[MeshJitted, tuple[Any, Batch, jax.ShapeDtypeStruct]]:
    """The jitted train step and abstract (state, batch, rng) for
    `fn.lower(*args).compile()` without allocating anything (e.g. over
    compile-only TPU devices)."""
    from bert_jax.train import state as state_lib

    abstract, shardings = state_lib.abstract_state(
        model_cfg, optimizer, mesh, seq_len, max_predictions, rules
    )
    bsh = sharding_lib.batch_sharding(mesh)
    fn = make_train_step(model_cfg, optimizer, mesh, shardings, bsh, accum_steps=accum_steps, rules=rules)
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=sharding_lib.replicated(mesh))
    return fn, (abstract, abstract_batch(global_batch, seq_len, max_predictions, bsh), rng)
