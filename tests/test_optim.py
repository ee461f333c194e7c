"""The optimizer: schedule values, the weight-decay mask, AdamW vs LAMB."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from train_utils import TINY_MODEL, tiny_config

from bert_jax.config import model_section
from bert_jax.errors import ConfigError
from bert_jax.model import BertForPreTraining, ModelSpec, dummy_pretraining_inputs
from bert_jax.train import optim


def _opt_cfg(**kw):
    c = tiny_config().optimizer
    c.learning_rate, c.warmup_steps, c.schedule = 1e-3, 10, "linear"
    c.update(kw)
    return c


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("linear", {0: 0.0, 5: 5e-4, 10: 1e-3, 60: 5e-4, 110: 0.0}),
        ("cosine", {0: 0.0, 5: 5e-4, 10: 1e-3, 60: 5e-4, 110: 0.0}),
        ("constant", {0: 0.0, 5: 5e-4, 10: 1e-3, 60: 1e-3, 110: 1e-3}),
        ("polynomial", {0: 0.0, 10: 1e-3, 60: 2.5e-4, 110: 0.0}),
    ],
)
def test_schedule_warmup_then_decay(schedule, expected):
    fn = optim.make_schedule(_opt_cfg(schedule=schedule, power=2.0), total_steps=110)
    got = {s: float(fn(s)) for s in expected}
    np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-9)


def test_end_learning_rate_is_reached():
    fn = optim.make_schedule(_opt_cfg(end_learning_rate=1e-5), total_steps=110)
    assert float(fn(110)) == pytest.approx(1e-5)


@pytest.fixture(scope="module")
def params():
    """The tiny model's parameter tree, as shapes (nothing is computed)."""
    cfg = ModelSpec.from_dict(model_section("tiny", **TINY_MODEL).to_dict())
    inputs = dummy_pretraining_inputs(1, 8, 2)
    return nn.meta.unbox(
        jax.eval_shape(lambda: BertForPreTraining(cfg).init(jax.random.key(0), **inputs)["params"])
    )


def test_decay_mask_excludes_bias_and_layernorm_only(params):
    mask = optim.decay_mask(params)
    flat = {
        "/".join(str(k.key) for k in path): v for path, v in jax.tree_util.tree_flatten_with_path(mask)[0]
    }
    assert flat["bert/embeddings/word_embeddings/embedding"] is True
    assert flat["bert/embeddings/position_embeddings/embedding"] is True
    assert flat["bert/encoder/layer_0/attention/query/kernel"] is True
    assert flat["bert/encoder/layer_0/intermediate/kernel"] is True
    assert flat["bert/encoder/layer_0/attention/query/bias"] is False
    assert flat["bert/encoder/layer_0/attention_LayerNorm/scale"] is False
    assert flat["bert/encoder/layer_0/output_LayerNorm/bias"] is False
    assert flat["mlm/LayerNorm/scale"] is False
    assert flat["mlm/bias"] is False
    decayed = {k for k, v in flat.items() if v}
    assert all(k.endswith(("kernel", "embedding")) for k in decayed)


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_weight_decay_moves_only_masked_in_leaves(name):
    """Zero gradients: only decayed leaves move, by lr * wd * value (AdamW)."""
    params = {
        "dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))},
        "LayerNorm": {"scale": jnp.ones((2,))},
    }
    cfg = _opt_cfg(name=name, warmup_steps=0, schedule="constant", weight_decay=0.1, max_grad_norm=1.0)
    tx, _ = optim.make_optimizer(cfg, total_steps=10)
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert np.all(np.asarray(updates["dense"]["bias"]) == 0)
    assert np.all(np.asarray(updates["LayerNorm"]["scale"]) == 0)
    if name == "adamw":
        np.testing.assert_allclose(updates["dense"]["kernel"], -1e-3 * 0.1, rtol=1e-6)
    else:
        assert np.all(np.asarray(updates["dense"]["kernel"]) < 0)


def test_clipping_bounds_the_update_norm():
    """With clipping at 1, a gradient of norm 1e6 gives the first Adam update of
    a unit gradient: lr * sign."""
    params = {"w": jnp.zeros((4,))}
    cfg = _opt_cfg(warmup_steps=0, schedule="constant", weight_decay=0.0, max_grad_norm=1.0)
    tx, _ = optim.make_optimizer(cfg, 10)
    updates, _ = tx.update({"w": jnp.full((4,), 5e5)}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -1e-3, rtol=1e-4)


def test_unknown_optimizer_is_a_config_error():
    with pytest.raises(ConfigError, match="optimizer.name='sgd'"):
        optim.make_optimizer(_opt_cfg(name="sgd"), 10)


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="optimizer.schedule='step'"):
        optim.make_optimizer(_opt_cfg(schedule="step"), 10)
