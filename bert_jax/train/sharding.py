"""The one device mesh builder and the one logical-axis rule table.

Mesh axes: `data` (pure data parallelism: params replicated), `fsdp` (data
parallel AND parameters + optimizer state sharded over it, ZeRO-3 style:
XLA all-gathers a layer's weights where it is used and reduce-scatters its
gradients) and `tensor` (Megatron-style: attention heads, the MLP's inner
dimension and the vocabulary split across devices).

The model (bert_jax.model) names every parameter and activation axis; the
rule table (configuration: `mesh.rules`, default
`bert_jax.config.DEFAULT_MESH_RULES`) maps those names to mesh axes. A mesh axis of size 1 shards nothing, so the
same table gives DP (data=N), FSDP (fsdp=N), TP (tensor=N) and any mix.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bert_jax.config import DEFAULT_MESH_RULES
from bert_jax.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

Rules = tuple[tuple[str, Any], ...]


def _mesh_axes_of(logical: str, value: Any) -> Any:
    """One rule's value ("tensor", "data,fsdp", "none" or "", or a sequence)
    as flax wants it: a mesh axis name, a tuple of names, or None."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else [str(n) for n in value]
    names = [n for n in names if n and n.lower() != "none"]
    for name in names:
        if name not in MESH_AXES:
            raise ConfigError(
                f"mesh.rules.{logical}={value!r}: unknown mesh axis {name!r}; "
                f"use {', '.join(MESH_AXES)} (joined by ',') or 'none'"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"mesh.rules.{logical}={value!r} names a mesh axis twice")
    if not names:
        return None
    return names[0] if len(names) == 1 else tuple(names)


def rules_from_table(table: Any) -> Rules:
    """The rule table of a config (`mesh.rules`: logical axis -> mesh axes)
    as the (logical, mesh) pairs flax takes; logical axes the table leaves
    out keep their default. ConfigError for a logical axis the model does
    not name or a mesh axis that does not exist."""
    table = dict(table or {})
    unknown = sorted(set(table) - set(DEFAULT_MESH_RULES))
    if unknown:
        raise ConfigError(
            f"mesh.rules.{unknown[0]}: unknown logical axis; the model names "
            f"{', '.join(DEFAULT_MESH_RULES)}"
        )
    merged = {**DEFAULT_MESH_RULES, **table}
    return tuple((logical, _mesh_axes_of(logical, merged[logical])) for logical in DEFAULT_MESH_RULES)


def rules_of(mesh_cfg: Any) -> Rules:
    """The rule table of a config's `mesh` section (the default where a
    config, e.g. an older run's config.json, has none)."""
    table = mesh_cfg.get("rules") if hasattr(mesh_cfg, "get") else None
    return rules_from_table(table)


# The default table (bert_jax.config.DEFAULT_MESH_RULES) as flax's pairs.
RULES: Rules = rules_from_table(DEFAULT_MESH_RULES)


def mesh_shape(mesh_cfg, num_devices: int) -> tuple[int, int, int]:
    """Sizes of (data, fsdp, tensor); one -1 takes the devices the others leave."""
    sizes = [int(mesh_cfg[a]) for a in MESH_AXES]
    described = ", ".join(f"mesh.{a}={s}" for a, s in zip(MESH_AXES, sizes, strict=True))
    if sum(s == -1 for s in sizes) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ConfigError(f"{described}: sizes must be positive, with at most one -1 (the remaining devices)")
    fixed = math.prod(s for s in sizes if s != -1)
    if num_devices % fixed:
        raise ConfigError(
            f"{described} needs a multiple of {fixed} devices but there are {num_devices}; "
            "pick sizes whose product divides the device count"
        )
    sizes = [num_devices // fixed if s == -1 else s for s in sizes]
    if math.prod(sizes) != num_devices:
        raise ConfigError(
            f"{described} uses {math.prod(sizes)} devices but there are {num_devices}; "
            "make the product equal the device count (or set one size to -1)"
        )
    return tuple(sizes)


def make_mesh(mesh_cfg, devices: Sequence[Any] | None = None) -> Mesh:
    """A Mesh with axes ("data", "fsdp", "tensor") over `devices` (default: all)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    try:
        grid = mesh_utils.create_device_mesh(shape, devices=devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError):
        # Compile-only or exotic devices without topology information.
        grid = np.array(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)


def _fit(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Drops the mesh axes of a dimension they do not divide (e.g. a 30522
    vocabulary over tensor=4): that dimension stays replicated."""
    out = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = math.prod(mesh.shape[n] for n in names)
        out.append(axes if names and dim % size == 0 else None)
    return PartitionSpec(*out)


def logical_shardings(boxed_abstract: Any, mesh: Mesh, rules=RULES) -> Any:
    """NamedShardings for a tree of (possibly `nn.Partitioned`-boxed) abstract
    arrays: the rule table applied to each leaf's logical axis names."""
    logical = nn.get_partition_spec(boxed_abstract)
    check_param_rules(logical, rules)
    mesh_specs = nn.logical_to_mesh(logical, rules)
    shapes = nn.meta.unbox(boxed_abstract)
    return jax.tree.map(
        lambda spec, x: NamedSharding(mesh, _fit(spec, x.shape, mesh)),
        mesh_specs,
        shapes,
        is_leaf=lambda s: isinstance(s, PartitionSpec),
    )


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def check_param_rules(logical_specs: Any, rules: Rules) -> None:
    """ConfigError naming the parameter when the rule table splits two of its
    dimensions over the same mesh axis (no valid sharding exists; flax
    would silently replicate one of them)."""
    table = dict(rules)
    flat, _ = jax.tree_util.tree_flatten_with_path(logical_specs, is_leaf=lambda s: isinstance(s, PartitionSpec))
    for path, spec in flat:
        used: dict[str, str] = {}
        for logical in spec or ():
            axes = table.get(logical) if isinstance(logical, str) else None
            for axis in (axes,) if isinstance(axes, str) else tuple(axes or ()):
                if axis in used:
                    raise ConfigError(
                        f"parameter {_path_name(path)}: mesh.rules splits both its {used[axis]!r} and "
                        f"{logical!r} dimensions over mesh axis {axis!r}; map one of them elsewhere or to 'none'"
                    )
                used[axis] = logical


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension over data x fsdp; the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways the batch is split (data x fsdp)."""
    return math.prod(mesh.shape[a] for a in BATCH_AXES)


def check_batch_size(global_batch: int, mesh: Mesh, accum_steps: int = 1, key: str = "batch_size") -> None:
    """ConfigError unless each micro-batch splits evenly over data x fsdp."""
    dp = data_parallel_size(mesh)
    if global_batch % accum_steps or (global_batch // accum_steps) % dp:
        raise ConfigError(
            f"{key}={global_batch} with optimizer.grad_accum_steps={accum_steps} gives micro-batches "
            f"that do not split over the {dp} data-parallel devices (mesh data x fsdp); "
            f"use a multiple of {dp * accum_steps}"
        )


class MeshJitted:
    """A jitted function that traces with the mesh (`jax.set_mesh`) and the
    logical-axis rule table in force, so every `nn.with_logical_constraint`
    in the model takes effect: activations are split as the rules say
    (batch over data x fsdp, heads and the MLP over tensor) instead of XLA
    guessing their layout from the parameters'. `lower` / `trace` /
    `eval_shape` for ahead-of-time use."""

    def __init__(self, jitted, mesh: Mesh, rules, bound: tuple = ()):
        # `bound`: trailing arguments passed on every call (the teacher's params).
        self._jitted, self.mesh, self.rules, self._bound = jitted, mesh, rules, tuple(bound)

    def _ctx(self):
        stack = contextlib.ExitStack()
        stack.enter_context(jax.set_mesh(self.mesh))
        stack.enter_context(nn.logical_axis_rules(self.rules))
        return stack

    def __call__(self, *args):
        with self._ctx():
            return self._jitted(*args, *self._bound)

    def lower(self, *args):
        with self._ctx():
            return self._jitted.lower(*args, *self._bound)

    def trace(self, *args):
        with self._ctx():
            return self._jitted.trace(*args, *self._bound)

    def eval_shape(self, *args):
        with self._ctx():
            return self._jitted.eval_shape(*args, *self._bound)
