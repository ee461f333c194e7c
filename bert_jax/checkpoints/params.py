"""Parameter trees: NumPy conversion, flat paths, the encoder's layer layout
(unrolled, scanned, shared) and the shape check every loader runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from bert_jax.errors import CheckpointError
from bert_jax.model import BertForPreTraining, ModelConfig, dummy_pretraining_inputs, execution_of

Params = dict[str, Any]


def numpy_params(params: Any) -> Params:
    """Unboxed tree of NumPy float32 arrays; drops a `{"params": ...}` wrapper."""
    params = nn.meta.unbox(params)
    if set(params) == {"params"}:
        params = params["params"]
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)


def flatten_params(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten_params(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten_params(flat: Mapping[tuple[str, ...], Any]) -> Params:
    tree: Params = {}
    for path, v in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return tree


def _layers_of(encoder: Mapping, num_layers: int) -> list[Params]:
    """One subtree per layer from any layout: unrolled, scanned or shared."""
    if "layer_0" in encoder:
        return [encoder[f"layer_{i}"] for i in range(num_layers)]
    if "layers" in encoder:
        stacked = encoder["layers"]["layer"]
        return [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(num_layers)]
    if "shared_layer" in encoder:
        return [encoder["shared_layer"]] * num_layers
    raise CheckpointError(f"encoder parameters have none of layer_0, layers, shared_layer: {sorted(encoder)}")


def with_layer_layout(params: Params, cfg: ModelConfig) -> Params:
    """`params` with `bert/encoder` in the layout the modules built from `cfg`
    have, from any layout: for an architecture (a bare ModelConfig) the
    canonical one every saved model holds, unrolled `layer_{i}` (ALBERT: its
    one `shared_layer`); for a ModelSpec with `scan_layers`, `layers/layer`
    with a leading `[num_layers]` axis. One shared ALBERT layer expands to
    identical layers; the reverse is refused."""
    encoder = params["bert"]["encoder"]
    layers = _layers_of(encoder, cfg.num_layers)
    if cfg.share_layers:
        if "shared_layer" not in encoder:
            raise CheckpointError("cannot turn separate encoder layers into one shared (ALBERT) layer")
        new_encoder = encoder
    elif execution_of(cfg).scan_layers:
        new_encoder = {"layers": {"layer": jax.tree.map(lambda *xs: np.stack(xs), *layers)}}
    else:
        new_encoder = {f"layer_{i}": layer for i, layer in enumerate(layers)}
    bert = {**params["bert"], "encoder": new_encoder}
    return {**params, "bert": bert}


def expected_shapes(cfg: ModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Every parameter `BertForPreTraining` (with NSP) and a sequence
    classifier would have under `cfg`, as flat path -> shape."""
    model = BertForPreTraining(cfg.replace(pair_head="nsp" if cfg.pair_head == "none" else cfg.pair_head))
    inputs = dummy_pretraining_inputs(1, 1, 1)
    tree = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), **inputs))["params"])
    shapes = {path: tuple(x.shape) for path, x in flatten_params(tree).items()}
    shapes[("classifier", "kernel")] = (cfg.hidden_size, cfg.num_labels)
    shapes[("classifier", "bias")] = (cfg.num_labels,)
    return shapes


def check_shapes(params: Params, cfg: ModelConfig, source: str) -> None:
    """Raises CheckpointError naming the first parameter whose shape differs
    from what `cfg` needs, or that the model does not have."""
    expected = expected_shapes(cfg)
    for path, x in sorted(flatten_params(params).items()):
        name = "/".join(path)
        if path[0] not in ("bert", "mlm", "pair", "classifier"):
            continue  # task heads of other models (qa_outputs, ...) are not ours to check
        if path not in expected:
            raise CheckpointError(f"{source}: parameter {name} does not exist in a model of this config")
        if tuple(x.shape) != expected[path]:
            raise CheckpointError(
                f"{source}: parameter {name} has shape {tuple(x.shape)} but the config needs "
                f"{expected[path]}; the checkpoint and its config do not match"
            )
    flat = flatten_params(params)
    missing = [p for p in expected if p[0] == "bert" and p[1] != "pooler" and p not in flat]
    if missing:
        raise CheckpointError(f"{source}: parameter {'/'.join(missing[0])} is missing")
