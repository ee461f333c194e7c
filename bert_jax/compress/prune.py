"""Pruning: unstructured magnitude masks on a schedule, and structured
attention-head pruning by importance (Michel et al. 2019, "Are Sixteen Heads
Really Better than One?").

Head importance needs no head-mask input in the model: a head's output enters
the layer only through its rows of `attention/output/kernel [heads, kv, embed]`,
so the gradient of the loss with respect to a (virtual) gate on head h equals
`sum(W_o[h] * dL/dW_o[h])`. Zeroing those rows is the masked-head model;
slicing the heads away (`shrink_heads`) is the pruned one, which runs as
`models.HeadPrunedClassifier`.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from bert_jax import checkpoints
from bert_jax.compress import models
from bert_jax.compress.models import HeadPrunedClassifier
from bert_jax.errors import CheckpointError, ConfigError, UserError
from bert_jax.finetune import runner, trainer
from bert_jax.finetune import step as ft_step
from bert_jax.finetune.config import finetune_config
from bert_jax.model import BertForSequenceClassification, ModelConfig
from bert_jax.train import engine

Params = dict[str, Any]
PRUNED_HEADS_FILE = "pruned_heads.json"

# Encoder weight matrices that unstructured pruning sparsifies (embeddings,
# LayerNorms, biases and the classifier stay dense, as in Gordon et al. 2020).
_PRUNABLE = ("query", "key", "value", "output", "intermediate")


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """`sparsity` if it is in [0, 1), else ConfigError naming `name`."""
    if not 0.0 <= float(sparsity) < 1.0:
        raise ConfigError(f"{name}={sparsity} is outside [0, 1); pass a fraction such as 0.5")
    return float(sparsity)


# --------------------------------------------------------------------------
# Unstructured magnitude pruning


def is_prunable(path: tuple[str, ...]) -> bool:
    """True for the kernels of the encoder's dense layers."""
    return path[0] == "bert" and path[1] == "encoder" and path[-1] == "kernel" and path[-2] in _PRUNABLE


def sparsity_at(step: jax.Array | int, target: float, begin_step: int, end_step: int) -> jax.Array:
    """Zhu & Gupta (2017) cubic schedule: 0 before `begin_step`, `target` from
    `end_step` on, `target * (1 - (1 - t)^3)` in between (t the fraction done)."""
    t = jnp.clip((jnp.asarray(step, jnp.float32) - begin_step) / max(end_step - begin_step, 1), 0.0, 1.0)
    return target * (1.0 - (1.0 - t) ** 3)


def magnitude_masks(params: Params, sparsity: float | jax.Array) -> Params:
    """Per-matrix masks (1.0 keep, 0.0 pruned) zeroing the `sparsity` fraction
    of smallest-|w| entries of each prunable kernel; 1.0 everywhere else.
    Works under jit (`sparsity` may be traced)."""

    def mask(path, w):
        if not is_prunable(tuple(k.key for k in path)):
            return jnp.ones_like(w)
        flat = jnp.sort(jnp.abs(w).ravel())
        k = jnp.clip(jnp.floor(sparsity * flat.size).astype(jnp.int32), 0, flat.size - 1)
        # Everything strictly below the k-th smallest goes (k of them, barring ties).
        threshold = jnp.where(k > 0, flat[k], -1.0)
        return (jnp.abs(w) >= threshold).astype(w.dtype)

    return jax.tree_util.tree_map_with_path(mask, params)


def magnitude_pruning(target: float, begin_step: int, end_step: int, every: int = 1) -> optax.GradientTransformation:
    """An optax transformation (chain it last) that turns each update into one
    whose result `params + update` is magnitude-pruned to the scheduled
    sparsity, recomputing the masks every `every` steps (pruned weights stay
    pruned in between through the kept mask). State: step count and masks."""
    check_sparsity(target, "prune.sparsity")

    def init(params):
        return {"count": jnp.zeros([], jnp.int32), "masks": jax.tree.map(jnp.ones_like, params)}

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("magnitude_pruning needs params; pass them to optimizer.update")
        step = state["count"]
        new = optax.apply_updates(params, updates)
        masks = jax.lax.cond(
            step % every == 0,
            lambda: magnitude_masks(new, sparsity_at(step, target, begin_step, end_step)),
            lambda: state["masks"],
        )
        pruned = jax.tree.map(lambda w, m: w * m, new, masks)
        return jax.tree.map(lambda p, q: p - q, pruned, params), {"count": step + 1, "masks": masks}

    return optax.GradientTransformation(init, update)


def measured_sparsity(params: Params) -> float:
    """Fraction of exact zeros over the prunable kernels."""
    flat = checkpoints.flatten_params(params)
    sizes = [(np.asarray(w) == 0).sum() for p, w in flat.items() if is_prunable(p)]
    total = sum(np.asarray(w).size for p, w in flat.items() if is_prunable(p))
    return float(sum(sizes) / max(total, 1))


# --------------------------------------------------------------------------
# Attention-head importance and structured pruning


def _layer_names(params: Params) -> list[str]:
    encoder = params["bert"]["encoder"]
    if "layer_0" not in encoder:
        raise CheckpointError("head pruning needs one parameter set per layer (bert/encoder/layer_i), "
                              "not ALBERT's one shared layer; prune a model without share_layers")
    return [f"layer_{i}" for i in range(len(encoder))]


def head_gates_gradient(params: Params, grads: Params) -> np.ndarray:
    """`[layers, heads]`: dL/d(gate of head h) = sum(W_o[h] * dL/dW_o[h])."""
    rows = []
    for name in _layer_names(params):
        w = params["bert"]["encoder"][name]["attention"]["output"]["kernel"]
        g = grads["bert"]["encoder"][name]["attention"]["output"]["kernel"]
        rows.append(np.asarray(jnp.sum(w * g, axis=(1, 2))))
    return np.stack(rows)


def head_importance(
    cfg: ModelConfig, params: Params, batches: Iterable[dict[str, np.ndarray]], normalize: bool = True
) -> np.ndarray:
    """Michel et al.'s importance `[layers, heads]`: the mean over `batches`
    (dicts with input_ids, input_mask, segment_ids `[batch, seq]` and
    `label [batch]`) of |dL/d gate|, L the cross-entropy of the classifier;
    with `normalize`, each layer's scores divided by their L2 norm."""
    model = BertForSequenceClassification(cfg)

    @jax.jit
    def grads(p, batch):
        def loss(p):
            logits = model.apply({"params": p}, batch["input_ids"], batch["input_mask"], batch["segment_ids"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

        return jax.grad(loss)(p)

    total, n = np.zeros((cfg.num_layers, cfg.num_heads)), 0
    for batch in batches:
        g = grads(params, {k: jnp.asarray(batch[k]) for k in ("input_ids", "input_mask", "segment_ids", "labels")})
        total += np.abs(head_gates_gradient(params, g))
        n += 1
    if n == 0:
        raise ConfigError("head importance needs at least one batch of labelled examples")
    scores = total / n
    if normalize:
        scores = scores / np.maximum(np.linalg.norm(scores, axis=1, keepdims=True), 1e-20)
    return scores


def heads_to_keep(importance: np.ndarray, fraction: float) -> list[list[int]]:
    """Per layer, the sorted indices of heads kept after removing the
    `round(fraction * all heads)` globally least important ones; every layer
    keeps at least its most important head."""
    check_sparsity(fraction, "prune.heads_fraction")
    layers, heads = importance.shape
    drop = int(round(fraction * layers * heads))
    order = np.argsort(importance, axis=None, kind="stable")
    removed = np.zeros(importance.shape, bool)
    for flat in order:
        if drop == 0:
            break
        layer, head = divmod(int(flat), heads)
        if (~removed[layer]).sum() > 1:
            removed[layer, head] = True
            drop -= 1
    return [sorted(int(h) for h in np.flatnonzero(~removed[layer])) for layer in range(layers)]


def mask_heads(params: Params, keep: Sequence[Sequence[int]]) -> Params:
    """The masked-head model: same shapes, the output-projection rows of every
    head not in `keep[layer]` zeroed (so the head contributes nothing)."""
    params = jax.tree.map(np.array, params)
    for name, kept in zip(_layer_names(params), keep, strict=True):
        kernel = params["bert"]["encoder"][name]["attention"]["output"]["kernel"]
        dropped = np.setdiff1d(np.arange(kernel.shape[0]), kept)
        kernel[dropped] = 0.0
    return params


def shrink_heads(params: Params, keep: Sequence[Sequence[int]]) -> Params:
    """The pruned parameters: per layer, only the heads in `keep[layer]` on
    the `heads` axis of query/key/value (kernel `[embed, heads, kv]`, bias
    `[heads, kv]`) and of the output kernel `[heads, kv, embed]`."""
    params = jax.tree.map(np.asarray, params)
    encoder = dict(params["bert"]["encoder"])
    for name, kept in zip(_layer_names(params), keep, strict=True):
        idx = np.asarray(kept, np.int64)
        attn = encoder[name]["attention"]
        new_attn = {
            proj: {"kernel": attn[proj]["kernel"][:, idx], "bias": attn[proj]["bias"][idx]}
            for proj in ("query", "key", "value")
        }
        new_attn["output"] = {"kernel": attn["output"]["kernel"][idx], "bias": attn["output"]["bias"]}
        encoder[name] = {**encoder[name], "attention": new_attn}
    return {**params, "bert": {**params["bert"], "encoder": encoder}}


def head_counts(params: Params) -> tuple[int, ...]:
    """Heads per layer, read from the query kernels' shapes."""
    encoder = params["bert"]["encoder"]
    return tuple(int(encoder[n]["attention"]["query"]["kernel"].shape[1]) for n in _layer_names(params))


def pruned_logits_fn(cfg: ModelConfig, heads: Sequence[int]) -> Callable[..., jax.Array]:
    """Jitted `(params, input_ids, input_mask, segment_ids) -> logits` of the head-pruned model."""
    model = HeadPrunedClassifier(cfg, tuple(heads))
    return jax.jit(lambda p, i, m, s: model.apply({"params": p}, i, m, s))


# --------------------------------------------------------------------------
# Head-pruned checkpoints: a model checkpoint plus pruned_heads.json


def save_pruned(
    path: str | os.PathLike,
    cfg: ModelConfig,
    params: Params,
    keep: Sequence[Sequence[int]],
    vocab_file: str | None = None,
    lower_case: bool | None = None,
    overwrite: bool = False,
    extra_files: dict[str, str] | None = None,
) -> pathlib.Path:
    """A model checkpoint directory (`checkpoints.save_model`: the tokenizer
    of any kind included) whose `params/` have per-layer head counts, which
    its `model_config.json` names (`heads_per_layer`, from the params), with
    `pruned_heads.json` `{"kept_heads": [[head, ...] per layer]}` naming the
    original indices kept. `load_pruned` reads it back."""
    params = checkpoints.numpy_params(params)
    cfg = models.head_pruned_config(cfg, head_counts(params))
    kept = json.dumps({"kept_heads": [list(k) for k in keep]}) + "\n"
    return checkpoints.save_model(path, cfg, params, vocab_file, lower_case, overwrite,
                                  extra_files={PRUNED_HEADS_FILE: kept, **(extra_files or {})})


def load_pruned(path: str | os.PathLike) -> tuple[ModelConfig, Params, tuple[int, ...], dict]:
    """(config, params, heads per layer, meta) of a `save_pruned` directory."""
    path = pathlib.Path(path)
    if not (path / PRUNED_HEADS_FILE).is_file():
        raise CheckpointError(f"{path} has no {PRUNED_HEADS_FILE}; it is not a head-pruned checkpoint")
    cfg = ModelConfig.from_dict(json.loads((path / checkpoints.MODEL_CONFIG).read_text()))
    restored = ocp.StandardCheckpointer().restore(path / checkpoints.PARAMS_DIR)
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), restored)
    vocab, lower_case = checkpoints.tokenizer_meta(path)
    meta = {"format": "bert-jax-pruned", "path": str(path), "vocab_file": vocab, "lower_case": lower_case}
    return cfg, params, head_counts(params), meta


# --------------------------------------------------------------------------
# The job

METHODS = ("heads", "magnitude")


def _fine_tune(model, params: Params, prepared, steps: int, batch_size: int, learning_rate: float,
               pruning: optax.GradientTransformation | None = None, seed: int = 0) -> Params:
    """`steps` of fine-tuning's train step on `model` (any module with
    `BertForSequenceClassification`'s call), its AdamW chained with `pruning`
    when given, in fine-tuning's loop (`runner.run_steps`, without
    evaluation or checkpoints: a recovery is minutes); returns NumPy params."""
    config = finetune_config(prepared.task)
    config.learning_rate, config.total_steps, config.batch_size = learning_rate, steps, batch_size
    tx = trainer.make_optimizer(config, steps)
    if pruning is not None:
        tx = optax.chain(tx, pruning)
    step = ft_step.make_train_step(model, prepared.head, tx)
    state, _ = engine.init_state(jax.tree.map(jnp.asarray, params), tx, jax.random.PRNGKey(seed))
    batches = trainer.train_batches(prepared.train, batch_size, seed)
    state, _ = runner.run_steps(config, state, step, jax.random.PRNGKey(seed), batches, None, "", steps,
                                 name="recovery step")
    return checkpoints.numpy_params(state.params)


def _recover(cfg: ModelConfig, params: Params, prepared, sparsity: float, steps: int, batch_size: int,
             learning_rate: float) -> Params:
    """Gradual magnitude pruning: `steps` of fine-tuning with the cubic
    schedule reaching `sparsity` after the first 2/3 (the rest recovers)."""
    pruning = magnitude_pruning(sparsity, begin_step=0, end_step=max(1, 2 * steps // 3))
    return _fine_tune(BertForSequenceClassification(cfg), params, prepared, steps, batch_size, learning_rate, pruning)


def paired_examples_per_second(fns: Sequence[Callable], params: Sequence[Params], vocab_size: int, seq_len: int,
                               rounds: int = 7, batch_size: int = 32) -> list[float]:
    """examples/s of each `(logits_fn, params)`, measured in alternating
    rounds (so both see the same machine load) and the median over `rounds`."""
    seen = [[] for _ in fns]
    for _ in range(max(rounds, 1)):
        for i, (fn, p) in enumerate(zip(fns, params, strict=True)):
            seen[i].append(models.examples_per_second(fn, p, vocab_size, seq_len, batch_size, runs=3))
    return [float(np.median(s)) for s in seen]


def run(config, workdir: str, output: str, overwrite: bool = False) -> dict:
    """Prunes a fine-tuned classifier as `config` (`compress.config.prune_config`)
    says and writes `output/` (a checkpoint) and `output/results.json`
    `{"dense": {...}, "pruned": {...}}` with dev metrics and examples_per_s
    (with `steps > 0` also `"one_shot"`: the dev metrics right after pruning,
    before recovery). `heads`: drop the `sparsity` fraction of attention heads
    by importance, shrinking the matrices, then fine-tune the small model
    `steps` steps; dense and pruned examples/s are measured in alternating
    rounds after training. `magnitude`: zero the `sparsity` fraction of each
    encoder matrix, one-shot (`steps=0`) or during `steps` of fine-tuning on
    the cubic schedule."""
    method, sparsity, steps = config.method, config.sparsity, int(config.steps)
    data_dir, max_seq_length = config.data_dir or None, config.max_seq_length
    batch_size, learning_rate = int(config.batch_size), float(config.learning_rate)
    importance_steps, throughput_runs = int(config.importance_steps), int(config.throughput_runs)
    if sparsity is None:
        raise UserError("config.sparsity is not set; pass --config.sparsity=S, a fraction in [0, 1)")
    if method not in METHODS:
        raise UserError(f"--config.method={method!r}; expected one of {', '.join(METHODS)}")
    check_sparsity(sparsity, "--config.sparsity")
    if steps < 0:
        raise UserError(f"--config.steps={steps}; pass 0 (one-shot) or a positive number of fine-tuning steps")
    cfg, params, meta, head = models.load_finetuned_classifier(workdir)
    task, data_dir, seq_len = models.task_settings(workdir, head, data_dir, max_seq_length)
    tokenizer = trainer.load_tokenizer(finetune_config(task), meta, meta["source"])
    trainer.check_vocab(cfg, tokenizer, meta["source"])
    prepared = models.prepare_task(task, data_dir, seq_len, tokenizer,
                                   max(steps, importance_steps) * batch_size)
    dense_fn = models.classifier_logits_fn(cfg)

    def scores(fn, p):
        return models.dev_scores(models.batch_fn(fn), p, prepared)

    def speed(fn, p):
        return models.examples_per_second(fn, p, cfg.vocab_size, seq_len, 32, throughput_runs)

    results = {"task": task, "method": method, "source": meta["source"], "max_seq_length": seq_len,
               "recovery_steps": steps, "dense": scores(dense_fn, params)}
    head = head or {"task": task, "head": "classification", "labels": None}
    if method == "heads":
        batches = itertools.islice(trainer.train_batches(prepared.train, batch_size, seed=0), importance_steps)
        keep = heads_to_keep(head_importance(cfg, params, batches), sparsity)
        small = shrink_heads(params, keep)
        heads = head_counts(small)
        pruned_fn = pruned_logits_fn(cfg, heads)
        if steps > 0:
            results["one_shot"] = scores(pruned_fn, small)
            small = _fine_tune(HeadPrunedClassifier(cfg, heads), small, prepared, steps, batch_size, learning_rate)
        # model_config.json names the per-layer head counts: predict mode and
        # load_model rebuild the pruned model from it alone.
        save_pruned(output, models.head_pruned_config(cfg, heads), small, keep, tokenizer.vocab_file,
                    tokenizer.lower_case, overwrite, extra_files={trainer.HEAD_FILE: trainer.head_json(head)})
        dense_speed, pruned_speed = paired_examples_per_second(
            [dense_fn, pruned_fn], [params, small], cfg.vocab_size, seq_len, throughput_runs)
        results["dense"]["examples_per_s"] = dense_speed
        results["pruned"] = {**scores(pruned_fn, small), "examples_per_s": pruned_speed,
                             "heads_fraction": sparsity, "heads_per_layer": list(heads)}
    else:
        results["dense"]["examples_per_s"] = speed(dense_fn, params)
        one_shot = jax.tree.map(lambda w, m: np.asarray(w * m), params, magnitude_masks(params, sparsity))
        if steps > 0:
            results["one_shot"] = scores(dense_fn, one_shot)
            pruned = _recover(cfg, params, prepared, sparsity, steps, batch_size, learning_rate)
        else:
            pruned = one_shot
        trainer.save_best(pathlib.Path(output), cfg, pruned, head, tokenizer, overwrite=overwrite)
        results["pruned"] = {**scores(dense_fn, pruned), "examples_per_s": speed(dense_fn, pruned),
                             "sparsity": measured_sparsity(pruned)}
    models.write_run_config(output, workdir, task, data_dir, seq_len, method=method, sparsity=sparsity, steps=steps,
                            importance_steps=importance_steps, batch_size=batch_size, learning_rate=learning_rate)
    trainer.write_json(pathlib.Path(output) / "results.json", results)
    return results
