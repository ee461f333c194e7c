"""The sharded step traces with the mesh and the rule table in force, so the
model's activation constraints take effect: activations between layers are
split batch-over-(data, fsdp), heads and the MLP over tensor; FSDP then needs
no more memory per device than DP; and the last layer at the read positions
is right on every mesh, 3-axis ones included."""

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from train_utils import batch, tiny_config

from bert_jax import flops
from bert_jax.compile import hlo_flops
from bert_jax.config import model_config
from bert_jax.errors import ConfigError
from bert_jax.train import optim, sharding, state, step

SEQ, PRED, GLOBAL_BATCH = 16, 4, 16

MESHES = {
    "DP": (8, 1, 1),
    "FSDP": (1, 8, 1),
    "TP": (1, 1, 8),
    "3-axis": (2, 2, 2),
}


def _mesh(sizes):
    return sharding.make_mesh(ml_collections.ConfigDict(dict(zip(sharding.MESH_AXES, sizes, strict=True))))


def _config(**model):
    # 8 heads and an MLP of 64 split over tensor=8; two layers, so one layer's
    # output is another's input.
    overrides = {"model.num_heads": 8, "model.num_layers": 2, "model.intermediate_size": 64}
    overrides.update({f"model.{k}": v for k, v in model.items()})
    return tiny_config(**overrides)


def _normalise(spec: P) -> tuple:
    """A spec as a tuple of tuples of mesh axes, trailing replicated dims dropped."""
    out = [() if e is None else ((e,) if isinstance(e, str) else tuple(e)) for e in spec]
    while out and not out[-1]:
        out.pop()
    return tuple(out)


_RECORDED: dict = {}


def _recorded_shardings(sizes):
    """`_record_shardings` once per mesh (each is a train-step compile)."""
    if sizes not in _RECORDED:
        _RECORDED[sizes] = _record_shardings(sizes)
    return _RECORDED[sizes]


def _record_shardings(sizes):
    """{module name: [normalised spec of its output, ...]} of the compiled train
    step, read with jax.debug.inspect_array_sharding on every module output
    of rank >= 3 (a flax method interceptor; the model is unchanged)."""
    config = _config()
    model_cfg = model_config(config)  # the last layer at the read positions, as by default
    assert model_cfg.last_layer_outputs_only
    mesh = _mesh(sizes)
    opt = optim.make_optimizer(config.optimizer, 10)
    fn, args = step.make_aot_step(model_cfg, opt, mesh, GLOBAL_BATCH, SEQ, PRED)
    seen: dict[str, list[tuple]] = {}

    def record(next_fun, args_, kwargs, context):
        out = next_fun(*args_, **kwargs)
        if context.method_name == "__call__" and isinstance(out, jax.Array) and out.ndim >= 3:
            name = context.module.name
            jax.debug.inspect_array_sharding(
                out, callback=lambda s, n=name: seen.setdefault(n, []).append(_normalise(s.spec))
            )
        return out

    with nn.intercept_methods(record):
        fn.lower(*args).compile()
    return seen, mesh


def _batch_entry(mesh) -> tuple:
    return tuple(a for a in sharding.BATCH_AXES if mesh.shape[a] > 1)


@pytest.mark.parametrize("name", list(MESHES))
def test_activations_between_layers_are_split_over_the_batch_axes(name):
    seen, mesh = _recorded_shardings(MESHES[name])
    batch_only = (_batch_entry(mesh),) if _batch_entry(mesh) else ()
    for module in ("embeddings", "layer_0", "layer_1", "attention_LayerNorm", "output_LayerNorm"):
        assert module in seen, f"{module} was not recorded"
        assert set(seen[module]) == {batch_only}, (module, seen[module])


@pytest.mark.parametrize("name", list(MESHES))
def test_heads_and_the_mlp_are_split_over_tensor(name):
    seen, mesh = _recorded_shardings(MESHES[name])
    tensor = ("tensor",) if mesh.shape["tensor"] > 1 else ()
    want = (_batch_entry(mesh), (), tensor) if tensor else ((_batch_entry(mesh),) if _batch_entry(mesh) else ())
    for module in ("query", "key", "value", "intermediate"):
        assert set(seen[module]) == {want}, (module, seen[module])


def _memory(sizes, global_batch):
    """Per-device bytes of the compiled train step: (arguments, temporaries)."""
    config = _config(hidden_size=64, intermediate_size=256, vocab_size=512, max_position_embeddings=64)
    opt = optim.make_optimizer(config.optimizer, 10)
    fn, args = step.make_aot_step(model_config(config), opt, _mesh(sizes), global_batch, 64, 8)
    m = fn.lower(*args).compile().memory_analysis()
    return m.argument_size_in_bytes, m.temp_size_in_bytes


def test_fsdp_needs_no_more_memory_than_dp_and_grows_alike_per_sequence():
    """Before the constraints took effect, FSDP's temporaries grew 3.4x faster
    per sequence than DP's (450 kB against 132 kB here): activations were
    split like the fsdp-sharded weights, i.e. replicated over the batch."""
    dp = {b: _memory((8, 1, 1), b) for b in (16, 64)}
    fsdp = {b: _memory((1, 8, 1), b) for b in (16, 64)}
    for b in (16, 64):
        assert sum(fsdp[b]) <= sum(dp[b])
        assert fsdp[b][0] < dp[b][0] / 4  # parameters and Adam moments split 8 ways
    dp_growth = dp[64][1] - dp[16][1]
    fsdp_growth = fsdp[64][1] - fsdp[16][1]
    assert abs(fsdp_growth - dp_growth) <= 0.1 * dp_growth, (fsdp_growth, dp_growth)


# --- each device does its share of the matmuls, no more -------------------------

# BERT's 30522 is 2 mod 4: like it, this vocabulary does not divide over
# tensor=4, so the table stays replicated over tensor (sharding._fit).
UNEVEN_VOCAB = 1022
FLOP_MESHES = {"DP": (8, 1, 1), "FSDP": (1, 8, 1), "TP": (2, 1, 4)}


def _dot_flops_per_device(sizes) -> tuple[float, float]:
    """(XLA's dot FLOPs per device of the compiled train step, the analytic
    count / devices), bert_jax.compile.hlo_flops on the partitioned HLO."""
    config = _config(vocab_size=UNEVEN_VOCAB, hidden_size=64, intermediate_size=256)
    model_cfg = model_config(config)
    mesh = _mesh(sizes)
    opt = optim.make_optimizer(config.optimizer, 10)
    fn, args = step.make_aot_step(model_cfg, opt, mesh, GLOBAL_BATCH, SEQ, PRED)
    hlo = fn.lower(*args).compile().as_text()
    return hlo_flops.dot_flops(hlo), flops.train_step_flops(model_cfg, GLOBAL_BATCH, SEQ, PRED) / mesh.size


@pytest.mark.parametrize("name", list(FLOP_MESHES))
def test_each_device_does_its_share_of_the_matmuls(name):
    """Before the MLM logits were split over tensor (act_vocab), each tensor
    rank projected every masked token onto the whole (replicated) vocabulary:
    1.54x the analytic dots per device here, 2-3x in libtpu's count of
    BERT-base/large on v4-8 and v5e-16 (docs/scaling.md). The 2% allows
    the uneven split's padding (1022 rows as 4 x 256)."""
    per_device, analytic = _dot_flops_per_device(FLOP_MESHES[name])
    assert abs(per_device / analytic - 1) < 0.02, per_device / analytic


def _train(sizes, steps=2):
    config = _config()
    model_cfg = model_config(config).replace(last_layer_outputs_only=True)
    mesh = _mesh(sizes) if sizes else sharding.make_mesh(
        ml_collections.ConfigDict({"data": 1, "fsdp": 1, "tensor": 1}), jax.devices()[:1]
    )
    opt = optim.make_optimizer(config.optimizer, 10)
    st, shardings = state.create_sharded_state(model_cfg, opt, mesh, SEQ, PRED, seed=0)
    fn = step.make_train_step(model_cfg, opt, mesh, shardings)
    rng = jax.random.key_data(jax.random.key(1))
    losses = []
    for i in range(steps):
        b = jax.device_put(batch(seed=i, batch_size=8), sharding.batch_sharding(mesh))
        st, metrics = fn(st, b, rng)
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(st.params)


def test_last_layer_at_read_positions_on_a_three_axis_mesh_equals_one_device():
    """Without the constraints in force, XLA's SPMD partitioner (jax 0.10.2)
    got this graph wrong for the middle batch shards of a 2x2x2 mesh (up to
    0.96 off), and the step ran the full last layer there instead."""
    one_losses, one_params = _train(None)
    mesh_losses, mesh_params = _train((2, 2, 2))
    np.testing.assert_allclose(mesh_losses, one_losses, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), mesh_params, one_params)


# The rule table is configuration.


def test_the_rule_table_is_in_the_config_and_one_rule_can_change():
    config = tiny_config()
    assert sharding.rules_of(config.mesh) == sharding.RULES
    config.mesh.rules.embed = "none"
    rules = dict(sharding.rules_of(config.mesh))
    assert rules["embed"] is None and rules["batch"] == ("data", "fsdp")
    config.mesh.rules.batch = "data"
    assert dict(sharding.rules_of(config.mesh))["batch"] == "data"


def test_a_config_without_rules_gets_the_default_table():
    mesh_cfg = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    assert sharding.rules_of(mesh_cfg) == sharding.RULES


def test_a_changed_rule_moves_the_parameters():
    config = tiny_config()
    config.mesh.rules.embed = "none"
    mesh = _mesh((1, 8, 1))
    params = state.param_shardings(model_config(config), mesh, sharding.rules_of(config.mesh))
    assert params["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"].spec == P(None, "tensor")


def test_an_unknown_logical_axis_is_a_config_error():
    with pytest.raises(ConfigError, match=r"mesh.rules.embedd: unknown logical axis; the model names vocab, embed"):
        sharding.rules_from_table({"embedd": "fsdp"})


def test_an_unknown_mesh_axis_is_a_config_error():
    with pytest.raises(ConfigError, match=r"mesh.rules.embed='fdsp': unknown mesh axis 'fdsp'; use data, fsdp, tensor"):
        sharding.rules_from_table({"embed": "fdsp"})


def test_a_mesh_axis_named_twice_in_one_rule_is_a_config_error():
    with pytest.raises(ConfigError, match=r"mesh.rules.batch='data,data' names a mesh axis twice"):
        sharding.rules_from_table({"batch": "data,data"})


def test_a_table_leaving_a_parameter_no_valid_sharding_names_it():
    rules = sharding.rules_from_table({"embed": "tensor"})  # embed and mlp both over tensor
    with pytest.raises(ConfigError, match=r"parameter bert/embeddings/word_embeddings/embedding: mesh.rules splits both its 'vocab' and 'embed' "
                       r"dimensions over mesh axis 'tensor'; map one of them elsewhere or to 'none'"):
        state.param_shardings(model_config(tiny_config()), _mesh((1, 1, 8)), rules)


def test_the_rule_table_is_saved_with_the_resolved_config():
    """config.json (the run's resolved config) is the ConfigDict as JSON."""
    import json

    saved = json.loads(tiny_config().to_json())
    assert saved["mesh"]["rules"]["batch"] == "data,fsdp"
    assert saved["mesh"]["rules"]["act_mlp"] == "tensor"


@pytest.mark.parametrize("name", ["FSDP", "3-axis"])
def test_the_fine_tuning_step_keeps_activations_split_over_the_batch(name):
    """Fine-tuning (and distillation and prediction, built on the same
    `finetune.step.under_mesh`) traces under the mesh and the rules too.
    Without them, on fsdp=8 the layer outputs were split over the hidden
    dimension and the MLP's activation replicated."""
    import optax

    from bert_jax.finetune import step as ft_step
    from bert_jax.model import BertForSequenceClassification
    from bert_jax.train import engine

    mesh = _mesh(MESHES[name])
    model = BertForSequenceClassification(model_config(_config()).replace(num_labels=2))
    params = ft_step.init_params(model, SEQ, jax.random.PRNGKey(0), {"bert": {}}, mesh)
    tx = optax.adamw(1e-3)
    train_state, shardings = engine.init_state(params, tx, jax.random.PRNGKey(1), mesh)
    b = batch(batch_size=GLOBAL_BATCH)
    host = {"input_ids": b["input_ids"], "input_mask": b["input_mask"], "segment_ids": b["segment_ids"],
            "labels": b["next_sentence_labels"], "weights": np.ones(GLOBAL_BATCH, np.float32)}
    placed = jax.device_put(host, sharding.batch_sharding(mesh))
    seen: dict[str, set] = {}

    def record(next_fun, args_, kwargs, context):
        out = next_fun(*args_, **kwargs)
        if context.method_name == "__call__" and isinstance(out, jax.Array) and out.ndim >= 3:
            jax.debug.inspect_array_sharding(
                out, callback=lambda s, n=context.module.name: seen.setdefault(n, set()).add(_normalise(s.spec))
            )
        return out

    fn = ft_step.make_train_step(model, "classification", tx, mesh, state_shardings=shardings)
    with nn.intercept_methods(record):
        fn.lower(train_state, placed, jax.random.PRNGKey(1)).compile()
    batch_axes = _batch_entry(mesh)
    for module in ("embeddings", "layer_0", "layer_1"):
        assert seen[module] == {(batch_axes,)}, (module, seen[module])
    tensor = ((), ("tensor",)) if mesh.shape["tensor"] > 1 else ()
    assert seen["intermediate"] == {(batch_axes, *tensor)}
