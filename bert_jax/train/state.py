"""The train state, created directly sharded over a mesh.

`TrainState` holds float32 master `params`, the optax `opt_state`, the
optimizer `step` (int32 scalar) and `rng` (a raw uint32 PRNG key, the base
key dropout keys are folded from). It is initialised inside one jit whose
out_shardings come from the rule table, so a model larger than one device's
memory is never materialised on one device. `abstract_state` gives the same
tree as ShapeDtypeStructs (with shardings) for ahead-of-time compilation.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from bert_jax.model import BertForPreTraining, ModelConfig, dummy_pretraining_inputs
from bert_jax.train import sharding as sharding_lib
from bert_jax.train.optim import Optimizer, as_transformation


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint layout (docs/design.md): params, opt_state, step, rng."""
        return {"params": self.params, "opt_state": self.opt_state, "step": self.step, "rng": self.rng}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(step=d["step"], params=d["params"], opt_state=d["opt_state"], rng=d["rng"])


def _raw_key(seed: int | jax.Array) -> jax.Array:
    """uint32[2] key data from an int seed, a raw key or a typed key."""
    if isinstance(seed, int):
        return jax.random.PRNGKey(seed)
    if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(seed)
    return seed


def _boxed_params(model_cfg: ModelConfig, seq_len: int, max_predictions: int, key: jax.Array) -> Any:
    inputs = dummy_pretraining_inputs(1, seq_len, max_predictions)
    return BertForPreTraining(model_cfg).init({"params": key}, **inputs, deterministic=True)["params"]


def _init(model_cfg, tx, seq_len, max_predictions, key) -> TrainState:
    params_key, state_key = jax.random.split(key)
    params = nn.meta.unbox(_boxed_params(model_cfg, seq_len, max_predictions, params_key))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=state_key)


def param_shardings(model_cfg: ModelConfig, mesh: Mesh, rules=sharding_lib.RULES, seq_len: int = 8) -> Any:
    """NamedShardings of the (unboxed) parameter tree under `rules`."""
    boxed = jax.eval_shape(
        functools.partial(_boxed_params, model_cfg, seq_len, 1), jax.ShapeDtypeStruct((2,), jnp.uint32)
    )
    return sharding_lib.logical_shardings(boxed, mesh, rules)


def state_shardings_for(
    model_cfg: ModelConfig, tx: optax.GradientTransformation, mesh: Mesh, abstract: TrainState, rules
) -> TrainState:
    """Shardings of the whole state: optimizer moments shard like their params
    (optax.tree_map_params), counters and the key are replicated."""
    return shardings_from_params(tx, param_shardings(model_cfg, mesh, rules), mesh, abstract.opt_state)


def shardings_from_params(
    tx: optax.GradientTransformation, params: Any, mesh: Mesh, abstract_opt_state: Any
) -> TrainState:
    """The state's shardings given its parameters' (`params`, NamedShardings):
    optimizer moments shard like their params (optax.tree_map_params),
    counters and the key are replicated. `abstract_opt_state`: `tx.init`'s
    tree (`jax.eval_shape(tx.init, params)`)."""
    rep = sharding_lib.replicated(mesh)
    opt = optax.tree_map_params(
        tx,
        lambda _, s: s,
        abstract_opt_state,
        params,
        transform_non_params=lambda _: rep,
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )
    return TrainState(step=rep, params=params, opt_state=opt, rng=rep)


def abstract_state(
    model_cfg: ModelConfig,
    optimizer: Optimizer | optax.GradientTransformation,
    mesh: Mesh,
    seq_len: int,
    max_predictions: int,
    rules=sharding_lib.RULES,
) -> tuple[TrainState, TrainState]:
    """(state as ShapeDtypeStructs carrying their shardings, state shardings);
    nothing is allocated. Feed it to `make_train_step(...).lower(...)`."""
    tx = as_transformation(optimizer)
    init = functools.partial(_init, model_cfg, tx, seq_len, max_predictions)
    shapes = jax.eval_shape(init, jax.ShapeDtypeStruct((2,), jnp.uint32))
    shardings = state_shardings_for(model_cfg, tx, mesh, shapes, rules)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings
    )
    return abstract, shardings


def create_sharded_state(
    model_cfg: ModelConfig,
    optimizer: Optimizer | optax.GradientTransformation,
    mesh: Mesh,
    seq_len: int,
    max_predictions: int,
    seed: int | jax.Array = 0,
    rules=sharding_lib.RULES,
) -> tuple[TrainState, TrainState]:
    """A freshly initialised state, each leaf born with its sharding, and the
    shardings tree. The init is one jit: parameters never gather on one device."""
    tx = as_transformation(optimizer)
    _, shardings = abstract_state(model_cfg, tx, mesh, seq_len, max_predictions, rules)
    init = jax.jit(functools.partial(_init, model_cfg, tx, seq_len, max_predictions), out_shardings=shardings)
    with nn.logical_axis_rules(rules):
        state = init(_raw_key(seed))
    return state, shardings
