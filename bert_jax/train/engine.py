"""The one train step of every job: a loss function in, a jitted
`step(state, batch, rng) -> (state, metrics)` on a `TrainState` out.

A job (pre-training's MLM + NSP/SOP, MLM distillation, a task head's loss,
task distillation) supplies only

    loss_fn(params, batch, rng) -> (loss, metrics)      # scalars
    loss_fn(params, batch, rng, frozen) -> ...          # with `frozen`

where `rng` is the dropout key of the (micro-)batch and `frozen` a pytree
the step reads but never updates (a teacher's parameters). Everything else
is here, once:

* Keys: `rng` given to the step is the run's base key; the key of a step is
  `fold_in(rng, state.step)` (and `fold_in(that, i)` for micro-batch i), so a
  run resumed at step k draws the dropout masks of one that never stopped.
* Gradient accumulation (`accum_steps` = k > 1): the batch `[B, ...]` is
  split into k micro-batches `[B / k, ...]` scanned one after another, their
  gradients and metrics averaged, one update applied (see
  bert_jax.train.optim for why not optax.MultiSteps).
* Clipping and the learning-rate schedule are the optimizer's
  (`optim.make_optimizer` chains `clip_by_global_norm` first).
* The non-finite guard: a step whose loss or gradient norm is NaN/Inf leaves
  params and optimizer state as they were (`lax.cond` around the update, so
  a finite step pays nothing for it) and reports `nonfinite` = 1.
* `make_step` jits it once with the state's shardings in and out, the batch
  split over data x fsdp, metrics replicated and the input state donated,
  traced under the mesh and the logical-axis rule table (`MeshJitted`) so
  the model's activation constraints apply. Without a mesh (one device, the
  pruning recovery) it is a plain jit with the state donated.

Metrics of every step: the loss function's, plus `grad_norm` (before
clipping), `nonfinite`, `real_tokens` (non-padding tokens, when the batch
has an `input_mask`) and `learning_rate` (of this step, when the optimizer
has a schedule).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from bert_jax.train import sharding as sharding_lib
from bert_jax.train.optim import Optimizer, as_transformation
from bert_jax.train.sharding import MeshJitted
from bert_jax.train.state import TrainState, shardings_from_params

Batch = dict[str, jax.Array]
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def gradients(loss_fn: LossFn, params, batch: Batch, key: jax.Array, accum_steps: int = 1, frozen=None):
    """(grads, metrics) of the whole batch; with accum_steps > 1 the mean over
    micro-batches `[batch / k, ...]` scanned one after another, micro-batch i
    with key `fold_in(key, i)`."""
    extra = () if frozen is None else (frozen,)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if accum_steps == 1:
        (_, metrics), grads = grad_fn(params, batch, key, *extra)
        return grads, metrics

    def split(x):
        return x.reshape((accum_steps, x.shape[0] // accum_steps) + x.shape[1:])

    micro = jax.tree.map(split, batch)

    def body(carry, xs):
        i, mb = xs
        (_, m), g = grad_fn(params, mb, jax.random.fold_in(key, i), *extra)
        return jax.tree.map(jnp.add, carry, (g, m)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    zero_metrics = jax.eval_shape(lambda: grad_fn(params, jax.tree.map(lambda x: x[0], micro), key, *extra)[0][1])
    zero_metrics = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero_metrics)
    (g, m), _ = jax.lax.scan(body, (zeros, zero_metrics), (jnp.arange(accum_steps), micro))
    return jax.tree.map(lambda x: x / accum_steps, (g, m))


def train_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    frozen=None,
    *,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    schedule=None,
    accum_steps: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step of `loss_fn` on `batch` (unjitted; `make_step` jits it).
    `rng` is the base key; the step's own is `fold_in(rng, state.step)`."""
    key = jax.random.fold_in(rng, state.step)
    grads, metrics = gradients(loss_fn, state.params, batch, key, accum_steps, frozen)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)

    def update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = jax.lax.cond(
        finite, update, lambda params, opt_state, _: (params, opt_state), state.params, state.opt_state, grads
    )
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    metrics = dict(metrics)
    metrics["grad_norm"] = grad_norm
    metrics["nonfinite"] = 1.0 - finite.astype(jnp.float32)
    if "input_mask" in batch:
        metrics["real_tokens"] = jnp.sum(batch["input_mask"] > 0, dtype=jnp.float32)
    if schedule is not None:
        metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    return new_state, metrics


class _WithFrozen:
    """A jitted step with its `frozen` argument bound (no mesh to trace under)."""

    def __init__(self, jitted, frozen):
        self._jitted, self._frozen = jitted, frozen

    def __call__(self, *args):
        return self._jitted(*args, self._frozen)

    def lower(self, *args):
        return self._jitted.lower(*args, self._frozen)


def make_step(
    loss_fn: LossFn,
    optimizer: Optimizer | optax.GradientTransformation,
    *,
    mesh: Mesh | None = None,
    state_shardings: TrainState | None = None,
    batch_sharding=None,
    accum_steps: int = 1,
    rules=sharding_lib.RULES,
    frozen=None,
    frozen_shardings=None,
):
    """`step(state, batch, rng) -> (state, metrics)` jitted once.

    With `mesh` (and `state_shardings`, a TrainState of NamedShardings): the
    state's shardings in and out, the batch over data x fsdp
    (`batch_sharding`), rng and metrics replicated, traced under the mesh
    and `rules`. Without: a plain jit. Either way the input state is donated
    (its buffers are reused: keep no other reference to it). `frozen`
    (placed with `frozen_shardings`; not donated, never updated) is bound as
    the step's last argument and reaches `loss_fn` as its fourth."""
    tx = as_transformation(optimizer)
    schedule = optimizer.schedule if isinstance(optimizer, Optimizer) else None
    fn = functools.partial(train_step, loss_fn=loss_fn, tx=tx, schedule=schedule, accum_steps=accum_steps)
    bound = () if frozen is None else (frozen,)
    if mesh is None:
        jitted = jax.jit(fn, donate_argnums=(0,))
        return _WithFrozen(jitted, frozen) if bound else jitted
    if state_shardings is None:
        raise ValueError("make_step with a mesh needs the state's shardings")
    rep = sharding_lib.replicated(mesh)
    in_shardings = (state_shardings, batch_sharding or sharding_lib.batch_sharding(mesh), rep)
    if bound:
        if frozen_shardings is None:
            raise ValueError("frozen arguments need their shardings")
        in_shardings += (frozen_shardings,)
    jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=(state_shardings, rep), donate_argnums=(0,))
    return MeshJitted(jitted, mesh, rules, bound)


def init_state(params, optimizer: Optimizer | optax.GradientTransformation, rng: jax.Array,
               mesh: Mesh | None = None) -> tuple[TrainState, TrainState | None]:
    """(state at step 0 around `params`, its shardings or None without a mesh).
    With `mesh`, `params` must be placed already: their shardings are the
    params', the optimizer moments shard like their parameters, the counters
    and a copy of the base key `rng` are replicated (the step donates the
    state's buffers; `rng` stays the caller's)."""
    tx = as_transformation(optimizer)
    if mesh is None:
        state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=jax.jit(tx.init)(params),
                           rng=jnp.array(rng))
        return state, None
    params_shardings = jax.tree.map(lambda x: x.sharding, params)
    shardings = shardings_from_params(tx, params_shardings, mesh, jax.eval_shape(tx.init, params))
    opt_state = jax.jit(tx.init, out_shardings=shardings.opt_state)(params)
    rep = sharding_lib.replicated(mesh)
    state = TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), rep), params=params, opt_state=opt_state,
                       rng=jax.device_put(jnp.array(rng), rep))
    return state, shardings


def abstract_like(tree: Any, shardings: Any = None) -> Any:
    """A tree of arrays (a TrainState, params) as ShapeDtypeStructs carrying
    `shardings` (the arrays' own when None): the target of a checkpoint restore."""
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
