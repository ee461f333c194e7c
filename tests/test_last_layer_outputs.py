"""The last encoder layer computed at the read positions only equals the
full last layer read at those positions (pre-training's MLM and pair heads)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import flops
from bert_jax.model import BertForPreTraining, BertModel, ModelConfig, ModelSpec

TINY = dict(vocab_size=97, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=64, max_position_embeddings=16)
VARIANTS = {
    "unrolled": {},
    "shared (ALBERT)": dict(family="albert", share_layers=True, embedding_size=16, pair_head="sop"),
    "scanned": dict(scan_layers=True),
    "remat": dict(remat_policy="full"),
    "no pair head": dict(pair_head="none"),
}


def _inputs():
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(5, 97, (3, 16)), jnp.int32)
    lengths = np.array([[16], [10], [5]])
    mask = jnp.asarray(np.arange(16)[None] < lengths, jnp.int32)
    positions = jnp.asarray([[1, 7, 15, 0], [2, 3, 9, 0], [1, 4, 0, 0]], jnp.int32)
    return ids, mask, jnp.zeros_like(ids), positions


@pytest.mark.parametrize("name", list(VARIANTS))
def test_pretraining_outputs_equal_the_full_last_layer(name):
    cfg = ModelSpec(**TINY, **VARIANTS[name], last_layer_outputs_only=True)
    ids, mask, seg, positions = _inputs()
    params = BertForPreTraining(cfg).init(jax.random.PRNGKey(0), ids, mask, seg, positions)
    fast = BertForPreTraining(cfg).apply(params, ids, mask, seg, positions)
    full = BertForPreTraining(cfg.replace(last_layer_outputs_only=False)).apply(params, ids, mask, seg, positions)
    assert fast.keys() == full.keys()
    for key in fast:
        np.testing.assert_allclose(fast[key], full[key], rtol=0, atol=1e-5)


def test_output_positions_give_states_at_those_positions_and_the_same_pooled_output():
    cfg = ModelConfig(**TINY)
    ids, mask, seg, positions = _inputs()
    model = BertModel(cfg)
    params = model.init(jax.random.PRNGKey(1), ids, mask, seg)
    full = model.apply(params, ids, mask, seg)
    part = model.apply(params, ids, mask, seg, output_positions=positions)
    assert part["sequence_output"].shape == (3, 4, 32)
    want = jnp.take_along_axis(full["sequence_output"], positions[..., None], axis=1)
    np.testing.assert_allclose(part["sequence_output"], want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(part["pooled_output"], full["pooled_output"], rtol=0, atol=1e-5)


def test_training_gradients_flow_with_dropout():
    cfg = ModelSpec(**TINY, last_layer_outputs_only=True)
    ids, mask, seg, positions = _inputs()
    model = BertForPreTraining(cfg)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), ids, mask, seg, positions))

    def loss(p):
        out = model.apply(p, ids, mask, seg, positions, deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
        return out["mlm_logits"].sum() + out["pair_logits"].sum()

    grads = jax.grad(loss)(params)["params"]["bert"]["encoder"]["layer_2"]["intermediate"]["kernel"]
    assert bool(jnp.all(jnp.isfinite(grads))) and float(jnp.abs(grads).sum()) > 0


def test_flops_count_the_last_layer_at_the_read_positions():
    """bert_base, batch 8, seq 128, 20 masked: the last layer's Q/O projections,
    attention and FFN at 21 of 128 positions; K/V projections at all 128."""
    cfg = ModelSpec(last_layer_outputs_only=True)
    b, s, p, h, i = 8, 128, 20, 768, 3072
    full_layer = 4 * 2 * b * s * h * h + 2 * 2 * b * s * s * h + 2 * 2 * b * s * h * i
    q = 21
    last = 2 * 2 * b * s * h * h + 2 * 2 * b * q * h * h + 2 * 2 * b * q * s * h + 2 * 2 * b * q * h * i
    got = flops.forward_flops_breakdown(cfg, b, s, p)["encoder"]
    assert got == 11 * full_layer + last
    assert flops.forward_flops_breakdown(cfg.replace(last_layer_outputs_only=False), b, s, p)["encoder"] == 12 * full_layer
    assert flops.forward_flops_breakdown(cfg.replace(scan_layers=True), b, s, p)["encoder"] == 12 * full_layer


def test_the_default_is_on():
    assert ModelSpec().last_layer_outputs_only is True
