"""The train step: the same losses on every mesh, real sharded arrays,
gradient accumulation, non-finite losses, and exact eval sums."""

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from train_utils import PRED, SEQ, batch, tiny_config

from bert_jax.config import model_config
from bert_jax.train import optim, sharding, state, step

MESHES = {
    "1 device": (1, 1, 1),
    "DP=8": (8, 1, 1),
    "FSDP=8": (1, 8, 1),
    "DP=2xTP=4": (2, 1, 4),
}
STEPS = 3


def _setup(mesh_sizes, accum_steps=1, **overrides):
    config = tiny_config(**overrides)
    n = int(np.prod(mesh_sizes))
    mesh = sharding.make_mesh(
        ml_collections.ConfigDict(dict(zip(("data", "fsdp", "tensor"), mesh_sizes, strict=True))),
        devices=jax.devices()[:n],
    )
    cfg = model_config(config)
    opt = optim.make_optimizer(config.optimizer, config.total_steps)
    train_state, shardings = state.create_sharded_state(cfg, opt, mesh, SEQ, PRED, seed=0)
    fn = step.make_train_step(cfg, opt, mesh, shardings, accum_steps=accum_steps)
    return config, mesh, cfg, train_state, shardings, fn


def _run(mesh_sizes, batches, **kw):
    _, mesh, cfg, train_state, shardings, fn = _setup(mesh_sizes, **kw)
    bsh = sharding.batch_sharding(mesh)
    losses = []
    for b in batches:
        train_state, metrics = fn(train_state, jax.device_put(b, bsh), jax.random.PRNGKey(7))
        losses.append(jax.device_get(metrics))
    return train_state, losses, (mesh, cfg, shardings, fn)


@pytest.fixture(scope="module")
def runs():
    """Each mesh's (final state, per-step metrics, (mesh, model config, shardings, step fn));
    compiled once for the whole module."""
    batches = [batch(seed=i) for i in range(STEPS)]
    return {name: _run(sizes, batches) for name, sizes in MESHES.items()}


@pytest.mark.parametrize("name", [n for n in MESHES if n != "1 device"])
def test_losses_match_one_device(runs, name):
    """Dropout on, same key: every mesh computes the same numbers."""
    ref = [m["loss"] for m in runs["1 device"][1]]
    got = [m["loss"] for m in runs[name][1]]
    np.testing.assert_allclose(got, ref, rtol=2e-5)
    assert ref[-1] != ref[0]  # training moved the loss


def test_metrics_are_the_documented_ones(runs):
    metrics = runs["1 device"][1][0]
    assert set(metrics) == {
        "loss",
        "mlm_loss",
        "mlm_accuracy",
        "nsp_loss",
        "nsp_accuracy",
        "grad_norm",
        "learning_rate",
        "nonfinite",
        "real_tokens",
    }
    assert metrics["loss"] == pytest.approx(metrics["mlm_loss"] + metrics["nsp_loss"])
    assert metrics["learning_rate"] == pytest.approx(1e-3)
    assert metrics["nonfinite"] == 0.0


def test_state_arrays_are_sharded_as_the_rules_say(runs):
    fsdp_state = runs["FSDP=8"][0]
    emb = fsdp_state.params["bert"]["embeddings"]["word_embeddings"]["embedding"]
    assert emb.sharding.spec == P("tensor", "fsdp")
    assert {s.data.shape for s in emb.addressable_shards} == {(128, 4)}
    tp_state = runs["DP=2xTP=4"][0]
    query = tp_state.params["bert"]["encoder"]["layer_0"]["attention"]["query"]["kernel"]
    assert {s.data.shape for s in query.addressable_shards} == {(32, 1, 8)}
    assert int(fsdp_state.step) == STEPS


def test_gradient_accumulation_matches_one_big_batch():
    """Equal MLM weight per micro-batch and dropout off: 2 micro-batches of 4
    give the update of one batch of 8."""
    off = {"model.hidden_dropout": 0.0, "model.attention_dropout": 0.0}
    b = [batch(seed=11)]
    s1, m1, _ = _run((1, 1, 1), b, **off)
    s2, m2, _ = _run((1, 1, 1), b, accum_steps=2, **off)
    np.testing.assert_allclose(m2[0]["loss"], m1[0]["loss"], rtol=1e-5)
    w1 = s1.params["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"]
    w2 = s2.params["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"]
    np.testing.assert_allclose(np.asarray(w2), np.asarray(w1), atol=1e-6)


def test_non_finite_loss_leaves_the_state_unchanged(runs):
    train_state, _, (mesh, _, _, fn) = runs["1 device"]
    bad = batch(seed=3)
    bad["masked_lm_weights"][0, 0] = np.nan
    before = jax.device_get(train_state.params)
    new_state, metrics = fn(
        train_state, jax.device_put(bad, sharding.batch_sharding(mesh)), jax.random.PRNGKey(0)
    )
    assert metrics["nonfinite"] == 1.0
    assert int(new_state.step) == STEPS + 1
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(new_state.params), before)


def test_eval_sums_add_up_over_batches(runs):
    train_state, _, (mesh, cfg, shardings, _) = runs["DP=8"]
    eval_fn = step.make_eval_step(cfg, mesh, shardings.params)
    full = batch(seed=5, batch_size=16)
    halves = [{k: v[:8] for k, v in full.items()}, {k: v[8:] for k, v in full.items()}]
    whole = jax.device_get(eval_fn(train_state.params, full))
    parts = [jax.device_get(eval_fn(train_state.params, h)) for h in halves]
    for key in whole:
        np.testing.assert_allclose(parts[0][key] + parts[1][key], whole[key], rtol=1e-5)
    assert whole["mlm_weight_sum"] == 16 * PRED
    assert whole["nsp_count"] == 16


def test_aot_lowering_from_abstract_state():
    """The step lowers from ShapeDtypeStructs alone (ahead-of-time use)."""
    config = tiny_config()
    mesh = sharding.make_mesh(ml_collections.ConfigDict({"data": 2, "fsdp": 2, "tensor": 2}))
    opt = optim.make_optimizer(config.optimizer, 10)
    fn, args = step.make_aot_step(model_config(config), opt, mesh, 8, SEQ, PRED)
    out_state, out_metrics = fn.lower(*args).out_info
    assert "loss" in out_metrics
    assert out_state.params["mlm"]["bias"].shape == (128,)
    assert args[1]["input_ids"].sharding.spec == P(("data", "fsdp"))
