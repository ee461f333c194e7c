"""`config.init`: fine-tuning starts from the checkpoint's weights
("pretrained") or from its architecture only, every weight initialised afresh
("random", the baseline that shows what pre-training bought)."""

import jax
import numpy as np
import pytest
from flax import traverse_util
from train_utils import save_random_checkpoint

from bert_jax import checkpoints
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import step as ft_step
from bert_jax.finetune import trainer
from bert_jax.train import sharding

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """(classifier model, the checkpoint's params, mesh, rules)."""
    ckpt = save_random_checkpoint(tmp_path_factory.mktemp("init"), VOCAB)
    cfg, params, _ = checkpoints.load_model(ckpt)
    config = ft_config.finetune_config("sst2")
    model = ft_step.make_model("classification", trainer.finetune_config(cfg, 2, config))
    return model, params, trainer.make_mesh(config), sharding.rules_of(config.mesh)


@pytest.fixture(scope="module")
def starts(loaded):
    """(checkpoint encoder leaves, {init: fine-tuning encoder leaves}), flattened."""
    model, params, mesh, rules = loaded
    out = {}
    for init in trainer.INITS:
        start = trainer.starting_weights(init, params)
        tuned = ft_step.init_params(model, 16, jax.random.PRNGKey(7), start, mesh, rules)
        out[init] = traverse_util.flatten_dict(jax.device_get(tuned["bert"]), sep="/")
    return traverse_util.flatten_dict(params["bert"], sep="/"), out


def _weights(leaves):
    """The matrices (kernels and embedding tables): never equal by chance."""
    return {k: v for k, v in leaves.items() if k.endswith(("kernel", "embedding"))}


def test_pretrained_starts_from_every_checkpoint_weight(starts):
    ckpt, out = starts
    for name, value in _weights(ckpt).items():
        np.testing.assert_array_equal(out["pretrained"][name], value, err_msg=name)


def test_random_keeps_the_shapes_but_no_checkpoint_weight(starts):
    ckpt, out = starts
    weights = _weights(ckpt)
    assert weights
    for name, value in weights.items():
        assert out["random"][name].shape == value.shape, name
        assert not np.array_equal(out["random"][name], value), name


def test_an_unknown_init_is_one_config_error():
    config = ft_config.finetune_config("sst2")
    config.init = "scratch"
    with pytest.raises(ConfigError, match="config.init='scratch'; expected one of pretrained, random"):
        trainer.config_init(config)


def _encoder_with(params, change) -> dict:
    """A copy of the checkpoint's params with `change(flat encoder leaves)` applied."""
    flat = dict(traverse_util.flatten_dict(params["bert"], sep="/"))
    change(flat)
    return {**params, "bert": traverse_util.unflatten_dict(flat, sep="/")}


def _a_kernel(params) -> str:
    return next(k for k in traverse_util.flatten_dict(params["bert"], sep="/") if k.endswith("kernel")
                and not k.startswith("pooler"))


def test_a_checkpoint_without_an_encoder_parameter_is_a_checkpoint_error(loaded):
    model, params, mesh, rules = loaded
    gone = _a_kernel(params)
    incomplete = _encoder_with(params, lambda flat: flat.pop(gone))
    with pytest.raises(CheckpointError, match=f"lacks encoder parameters .*bert/{gone}.*convert or save it again"):
        ft_step.init_params(model, 16, jax.random.PRNGKey(7), incomplete, mesh, rules)


def test_a_checkpoint_parameter_of_another_shape_is_a_checkpoint_error(loaded):
    model, params, mesh, rules = loaded
    name = _a_kernel(params)
    reshaped = _encoder_with(params, lambda flat: flat.update({name: np.zeros((3, 5), np.float32)}))
    with pytest.raises(CheckpointError, match=rf"bert/{name} has shape \(3, 5\) but its model config needs"):
        ft_step.init_params(model, 16, jax.random.PRNGKey(7), reshaped, mesh, rules)


def test_a_checkpoint_without_a_pooler_starts_the_pooler_afresh(loaded):
    model, params, mesh, rules = loaded
    without = _encoder_with(params, lambda flat: [flat.pop(k) for k in list(flat) if k.startswith("pooler/")])
    tuned = traverse_util.flatten_dict(
        jax.device_get(ft_step.init_params(model, 16, jax.random.PRNGKey(7), without, mesh, rules)["bert"]), sep="/"
    )
    assert any(k.startswith("pooler/") for k in tuned)
    name = _a_kernel(params)
    np.testing.assert_array_equal(tuned[name], traverse_util.flatten_dict(params["bert"], sep="/")[name])
