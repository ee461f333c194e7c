"""The pre-training optimizer: AdamW or LAMB, warmup + decay, clipping.

Schedules: linear warmup, then linear / polynomial / cosine decay over the
rest of the run, a constant rate, or "wsd" (warmup-stable-decay, the
trapezoid of ModernBERT and mmBERT): constant after the warmup, then a decay
over the last `decay_steps` (or `decay_fraction` of the run), linear or
"1-sqrt", to end_learning_rate.

`make_optimizer(opt_cfg, total_steps)` returns an `Optimizer` (a named pair
`(tx, schedule)`, so it unpacks as `tx, schedule = make_optimizer(...)`).

Weight decay follows BERT: every parameter decays except biases and LayerNorm
scales/biases (embeddings decay). Gradient accumulation is not an optax
wrapper here: the train step scans over `grad_accum_steps` micro-batches and
applies one update (bert_jax.train.step), so the optimizer state never holds
a half-accumulated gradient and a checkpoint always falls on an optimizer
step (exact resume needs no micro-step bookkeeping).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from bert_jax.errors import ConfigError

SCHEDULES = ("linear", "polynomial", "cosine", "constant", "wsd")
DECAY_SHAPES = ("linear", "1-sqrt")  # of the wsd schedule's final decay
OPTIMIZERS = ("adamw", "lamb")


class Optimizer(NamedTuple):
    """An optax transformation and its learning-rate schedule (step -> lr)."""

    tx: optax.GradientTransformation
    schedule: Callable[[Any], Any]


def as_transformation(optimizer: Optimizer | optax.GradientTransformation) -> optax.GradientTransformation:
    """The optax transformation of an `Optimizer` or a bare transformation."""
    return optimizer.tx if isinstance(optimizer, Optimizer) else optimizer


def make_schedule(opt_cfg, total_steps: int) -> Callable[[Any], Any]:
    """Linear warmup 0 -> learning_rate over warmup_steps, then the decay
    `opt_cfg.schedule` to end_learning_rate at total_steps (optimizer steps)."""
    lr, end = float(opt_cfg.learning_rate), float(opt_cfg.end_learning_rate)
    warmup = int(opt_cfg.warmup_steps)
    name = opt_cfg.schedule
    if name not in SCHEDULES:
        raise ConfigError(f"optimizer.schedule={name!r}; expected one of {', '.join(SCHEDULES)}")
    if warmup < 0 or total_steps <= 0:
        raise ConfigError(
            f"optimizer.warmup_steps={warmup} and total_steps={total_steps}; need warmup >= 0 and total > 0"
        )
    if name == "wsd":
        decay = _stable_then_decay(opt_cfg, lr, end, warmup, total_steps)
    elif name == "constant":
        decay = optax.constant_schedule(lr)
    elif name == "cosine":
        decay = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), alpha=end / lr if lr else 0.0)
    else:
        power = 1.0 if name == "linear" else float(opt_cfg.power)
        decay = optax.polynomial_schedule(lr, end, power, max(total_steps - warmup, 1))
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def wsd_decay_steps(opt_cfg, total_steps: int, warmup: int) -> int:
    """The wsd schedule's decay length: optimizer.decay_steps, which must fit
    after the warmup, or when that is 0, optimizer.decay_fraction of
    total_steps (rounded; at most the steps after the warmup, so a shortened
    run, --config.total_steps=40, keeps a proportionate decay)."""
    steps = int(opt_cfg.get("decay_steps", 0) or 0)
    fraction = float(opt_cfg.get("decay_fraction", 0.0) or 0.0)
    if steps < 0:
        raise ConfigError(f"optimizer.decay_steps={steps}; use 0 (decay_fraction decides) or a positive count")
    if not steps:
        if not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"optimizer.decay_fraction={fraction}; use a fraction of total_steps in [0, 1]")
        return min(round(fraction * total_steps), max(total_steps - warmup, 0))
    if steps > total_steps - warmup:
        raise ConfigError(
            f"optimizer schedule 'wsd': decay of {steps} steps after warmup_steps={warmup} exceeds "
            f"total_steps={total_steps}; use decay_steps (or decay_fraction * total_steps) <= {total_steps - warmup}"
        )
    return steps


def _stable_then_decay(opt_cfg, lr: float, end: float, warmup: int, total_steps: int) -> Callable[[Any], Any]:
    """After the warmup: `lr` until the last `decay` steps, then down to `end`
    at total_steps, linearly or as 1 - sqrt(progress) (ModernBERT's decay:
    it drops fast at first, then flattens). Step 0 is the first after warmup."""
    shape = str(opt_cfg.get("decay_shape", "linear"))
    if shape not in DECAY_SHAPES:
        raise ConfigError(f"optimizer.decay_shape={shape!r}; expected one of {', '.join(DECAY_SHAPES)}")
    decay = wsd_decay_steps(opt_cfg, total_steps, warmup)
    stable = total_steps - warmup - decay

    def schedule(step):
        progress = jnp.clip((jnp.asarray(step, jnp.float32) - stable) / max(decay, 1), 0.0, 1.0)
        remaining = 1.0 - (progress if shape == "linear" else jnp.sqrt(progress))
        return end + (lr - end) * remaining

    return schedule


def _path_names(path) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def decay_mask(params: Any) -> Any:
    """True for the leaves weight decay applies to: all but biases and LayerNorm."""

    def decays(path, _) -> bool:
        names = _path_names(path)
        if names and names[-1] == "bias":
            return False
        return not any("layernorm" in n.lower().replace("_", "") for n in names)

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(opt_cfg, total_steps: int) -> Optimizer:
    """AdamW (or LAMB, You et al. 2019) with global-norm clipping, decoupled
    weight decay masked by `decay_mask` and the warmup/decay schedule.

    Clipping comes first, as in BERT's optimization.py (clip, then Adam)."""
    if opt_cfg.name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name={opt_cfg.name!r}; expected one of {', '.join(OPTIMIZERS)}")
    if int(opt_cfg.get("grad_accum_steps", 1)) < 1:
        raise ConfigError(f"optimizer.grad_accum_steps={opt_cfg.grad_accum_steps}; expected >= 1")
    schedule = make_schedule(opt_cfg, total_steps)
    kwargs = dict(
        learning_rate=schedule,
        b1=float(opt_cfg.b1),
        b2=float(opt_cfg.b2),
        eps=float(opt_cfg.eps),
        weight_decay=float(opt_cfg.weight_decay),
        mask=decay_mask,
    )
    core = optax.adamw(**kwargs) if opt_cfg.name == "adamw" else optax.lamb(**kwargs)
    parts = [core]
    if float(opt_cfg.max_grad_norm) > 0:
        parts.insert(0, optax.clip_by_global_norm(float(opt_cfg.max_grad_norm)))
    return Optimizer(optax.chain(*parts), schedule)
