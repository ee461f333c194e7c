"""Every training objective of bert-jax, each a small pure function of arrays.

A job is a loss plus a config: pre-training (MLM + NSP/SOP, `pretraining_sums`),
general distillation (`mlm_kl_sum` against a frozen teacher's MLM logits),
fine-tuning a task head (`task_loss`) and task distillation (`distillation_loss`,
`hidden_state_loss`, `attention_map_loss`). The step builders
(`bert_jax.train.step`, `bert_jax.finetune.step`, `bert_jax.compress.distill`)
differentiate these; nothing here knows of models, optimizers or meshes.

Conventions: logits are float32 or are cast to it before a softmax; `weights`
are 0/1 (or real) per example or per position and every mean is
`sum(w * x) / max(sum(w), eps)`, so padded examples and positions count for
nothing; sums (not means) are returned where callers add several batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

# Denominator floors: BERT's MLM loss divides by sum(w) + 1e-5; task means by
# max(sum(w), 1e-9) (a batch with no real example gives 0, not NaN).
MLM_EPS = 1e-5
MEAN_EPS = 1e-9

Batch = dict[str, jax.Array]


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    """Scalar `sum(values * weights) / max(sum(weights), 1e-9)`; same shapes."""
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), MEAN_EPS)


def kl_at_temperature(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
    """KL(softmax(teacher / T) || softmax(student / T)) over the last axis, in
    nats: logits `[..., classes]` -> `[...]`. Both through log_softmax in
    float32, so a teacher probability that underflows to 0 contributes 0."""
    log_p = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    log_q = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


# --------------------------------------------------------------------------
# Pre-training: MLM and the sentence-pair head


def pretraining_sums(outputs: dict[str, jax.Array], batch: Batch, pair_head: bool) -> dict[str, jax.Array]:
    """Summed (not averaged) loss and accuracy counts of one batch, so sums
    over many batches give exact totals.

    outputs: `mlm_logits [batch, P, vocab]` (and `pair_logits [batch, 2]`);
    batch: `masked_lm_ids`, `masked_lm_weights [batch, P]` (and
    `next_sentence_labels [batch]`). MLM terms are weighted by the masked-LM
    weights; pair terms count examples.
    """
    logits = outputs["mlm_logits"]
    w = batch["masked_lm_weights"].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["masked_lm_ids"])
    correct = (jnp.argmax(logits, -1) == batch["masked_lm_ids"]).astype(jnp.float32)
    sums = {
        "mlm_loss_sum": jnp.sum(w * ce),
        "mlm_correct_sum": jnp.sum(w * correct),
        "mlm_weight_sum": jnp.sum(w),
    }
    if pair_head:
        pair = outputs["pair_logits"]
        labels = batch["next_sentence_labels"]
        sums["nsp_loss_sum"] = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(pair, labels))
        sums["nsp_correct_sum"] = jnp.sum((jnp.argmax(pair, -1) == labels).astype(jnp.float32))
        sums["nsp_count"] = jnp.asarray(labels.shape[0], jnp.float32)
    return sums


def pretraining_metrics(sums: dict[str, Any]) -> dict[str, Any]:
    """loss, mlm_loss, mlm_accuracy (and nsp_loss, nsp_accuracy) from
    `pretraining_sums` (or their totals over batches); the MLM loss is
    sum(w * ce) / max(sum(w), 1e-5) as in the original BERT."""
    den = jnp.maximum(sums["mlm_weight_sum"], MLM_EPS)
    out = {"mlm_loss": sums["mlm_loss_sum"] / den, "mlm_accuracy": sums["mlm_correct_sum"] / den}
    out["loss"] = out["mlm_loss"]
    if "nsp_count" in sums:
        n = jnp.maximum(sums["nsp_count"], 1.0)
        out["nsp_loss"] = sums["nsp_loss_sum"] / n
        out["nsp_accuracy"] = sums["nsp_correct_sum"] / n
        out["loss"] = out["loss"] + out["nsp_loss"]
    return out


def mlm_kl_sum(student_logits: jax.Array, teacher_logits: jax.Array, weights: jax.Array,
               temperature: float) -> jax.Array:
    """Scalar: sum over masked positions of w * KL(teacher_T || student_T);
    logits `[batch, P, vocab]`, weights `[batch, P]`."""
    kl = kl_at_temperature(student_logits, teacher_logits, temperature)
    return jnp.sum(weights.astype(jnp.float32) * kl)


def mlm_distill_metrics(metrics: dict[str, jax.Array], kl_sum: jax.Array, weight_sum: jax.Array,
                        temperature: float, alpha: float) -> dict[str, jax.Array]:
    """`pretraining_metrics` output plus `mlm_kl` (mean KL per masked token),
    with the loss's MLM part replaced by alpha * T^2 * mlm_kl + (1 - alpha) *
    mlm_loss; mlm_loss itself stays the hard cross-entropy (comparable with
    runs without a teacher). The pair head keeps its hard loss (a teacher may
    have none)."""
    out = dict(metrics)
    out["mlm_kl"] = kl_sum / jnp.maximum(weight_sum, MLM_EPS)
    soft = alpha * temperature**2 * out["mlm_kl"]
    out["loss"] = soft + (1.0 - alpha) * metrics["mlm_loss"]
    if "nsp_loss" in metrics:
        out["loss"] = out["loss"] + metrics["nsp_loss"]
    return out


# --------------------------------------------------------------------------
# Fine-tuning a task head


def task_loss(head: str, outputs, batch: Batch) -> jax.Array:
    """Scalar float32 loss of a task head, a `weights [batch]`-weighted mean:

    - regression: squared error of `outputs [batch, 1]` against `labels [batch]`;
    - classification / token: cross-entropy of `outputs [batch, labels]` or
      `[batch, seq, labels]` against `labels` (ignored positions carry -1 and weight 0);
    - span: the mean of the start and end cross-entropies, `outputs` =
      (start, end) `[batch, seq]` against `start_positions`, `end_positions [batch]`.
    """
    if head == "regression":
        return weighted_mean(jnp.square(outputs[:, 0] - batch["labels"]), batch["weights"])
    if head in ("classification", "token"):
        labels = jnp.maximum(batch["labels"], 0)
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs, labels)
        return weighted_mean(ce, batch["weights"])
    start_logits, end_logits = outputs
    ce = optax.softmax_cross_entropy_with_integer_labels(start_logits, batch["start_positions"])
    ce += optax.softmax_cross_entropy_with_integer_labels(end_logits, batch["end_positions"])
    return weighted_mean(ce / 2, batch["weights"])


# --------------------------------------------------------------------------
# Task distillation (a fine-tuned teacher's logits, hidden states, attention)


def soft_target_loss(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
    """`[batch]`: T^2 * KL(softmax(teacher/T) || softmax(student/T)) of logits
    `[batch, labels]`; the T^2 keeps the gradient scale independent of T
    (Hinton et al. 2015)."""
    return temperature**2 * kl_at_temperature(student_logits, teacher_logits, temperature)


def distillation_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    temperature: float,
    alpha: float,
) -> jax.Array:
    """Scalar: `alpha * soft + (1 - alpha) * hard`, each a `weights [batch]`-weighted
    mean; hard is the cross-entropy of `student_logits [batch, labels]` with
    the integer `labels [batch]`."""
    soft = weighted_mean(soft_target_loss(student_logits, teacher_logits, temperature), weights)
    hard = weighted_mean(optax.softmax_cross_entropy_with_integer_labels(student_logits, labels), weights)
    return alpha * soft + (1.0 - alpha) * hard


def hidden_state_loss(
    student: Sequence[jax.Array], teacher: Sequence[jax.Array], mask: jax.Array, projection: dict | None
) -> jax.Array:
    """Scalar: mean over pairs of the MSE between `student[i] [batch, seq, hs]`
    (projected to the teacher width by `projection` {kernel [hs, ht], bias [ht]}
    when given) and `teacher[i] [batch, seq, ht]`, over real tokens (`mask [batch, seq]`)."""
    mask = mask.astype(jnp.float32)[..., None]
    total = 0.0
    for s, t in zip(student, teacher, strict=True):
        if projection is not None:
            s = s @ projection["kernel"] + projection["bias"]
        err = jnp.square(s.astype(jnp.float32) - t.astype(jnp.float32)) * mask
        total += jnp.sum(err) / jnp.maximum(jnp.sum(mask) * t.shape[-1], 1.0)
    return total / len(student)


def attention_probs(query: jax.Array, key: jax.Array, mask: jax.Array) -> jax.Array:
    """`[batch, heads, seq, seq]` softmax(q k^T / sqrt(d)) from `query, key
    [batch, seq, heads, d]` with padded keys (`mask [batch, seq]` 0) excluded."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key) / jnp.sqrt(query.shape[-1]).astype(query.dtype)
    logits = jnp.where(mask[:, None, None, :] > 0, logits.astype(jnp.float32), jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1)


def attention_map_loss(student: Sequence[jax.Array], teacher: Sequence[jax.Array], mask: jax.Array) -> jax.Array:
    """Scalar: mean over pairs of KL(teacher || student) of attention rows
    `[batch, heads, seq, seq]`, averaged over heads and real query tokens
    (`mask [batch, seq]`; MiniLM). Probabilities, not logits: floored at 1e-12
    before the log, since masked keys have probability 0."""
    rows = mask.astype(jnp.float32)[:, None, :]  # [batch, 1, query]
    total = 0.0
    for s, t in zip(student, teacher, strict=True):
        kl = jnp.sum(t * (jnp.log(jnp.maximum(t, 1e-12)) - jnp.log(jnp.maximum(s, 1e-12))), axis=-1)
        total += jnp.sum(kl * rows) / jnp.maximum(jnp.sum(rows) * kl.shape[1], 1.0)
    return total / len(student)
