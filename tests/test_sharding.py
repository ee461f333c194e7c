"""The mesh builder and the rule table: sizes, errors, and where each
parameter and optimizer moment actually lives."""

import jax
import ml_collections
import pytest
from jax.sharding import PartitionSpec as P
from train_utils import tiny_config

from bert_jax.config import model_config
from bert_jax.errors import ConfigError
from bert_jax.train import optim, sharding, state


def _mesh_cfg(data=-1, fsdp=1, tensor=1):
    return ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor})


@pytest.mark.parametrize(
    "sizes, shape",
    [((-1, 1, 1), (8, 1, 1)), ((1, -1, 1), (1, 8, 1)), ((2, -1, 2), (2, 2, 2)), ((2, 1, 4), (2, 1, 4))],
)
def test_mesh_shape_fills_the_minus_one(sizes, shape):
    mesh = sharding.make_mesh(_mesh_cfg(*sizes))
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert tuple(mesh.shape.values()) == shape


def test_mesh_on_given_devices():
    mesh = sharding.make_mesh(_mesh_cfg(), devices=jax.devices()[:2])
    assert mesh.shape["data"] == 2


def test_mesh_not_dividing_the_devices_is_a_config_error():
    with pytest.raises(ConfigError, match=r"mesh.data=3.*multiple of 3 devices but there are 8"):
        sharding.make_mesh(_mesh_cfg(3, 1, 1))


def test_mesh_using_fewer_devices_is_a_config_error():
    with pytest.raises(ConfigError, match=r"uses 2 devices but there are 8"):
        sharding.make_mesh(_mesh_cfg(2, 1, 1))


def test_two_minus_ones_is_a_config_error():
    with pytest.raises(ConfigError, match="at most one -1"):
        sharding.make_mesh(_mesh_cfg(-1, -1, 1))


def test_batch_not_divisible_by_data_parallel_size_is_a_config_error():
    mesh = sharding.make_mesh(_mesh_cfg(2, 2, 2))
    sharding.check_batch_size(8, mesh)
    with pytest.raises(ConfigError, match=r"batch_size=6 .* 4 data-parallel devices"):
        sharding.check_batch_size(6, mesh)
    with pytest.raises(ConfigError, match="grad_accum_steps=2"):
        sharding.check_batch_size(4, mesh, accum_steps=2)


def _abstract(mesh_sizes, **model):
    config = tiny_config(**{f"model.{k}": v for k, v in model.items()})
    mesh = sharding.make_mesh(_mesh_cfg(*mesh_sizes))
    opt = optim.make_optimizer(config.optimizer, 10)
    return state.abstract_state(model_config(config), opt, mesh, 16, 4)


def _spec(tree_sharding, *path):
    node = tree_sharding
    for p in path:
        node = node[p]
    return node.spec


def test_fsdp_shards_params_and_adam_moments_over_fsdp():
    abstract, shardings = _abstract((1, 8, 1))
    params = shardings.params
    # One rule table for every mode: axes of size 1 (tensor here) shard nothing.
    assert _spec(params, "bert", "embeddings", "word_embeddings", "embedding") == P("tensor", "fsdp")
    assert _spec(params, "bert", "encoder", "layer_0", "attention", "query", "kernel") == P(
        "fsdp", "tensor", None
    )
    assert _spec(params, "bert", "encoder", "layer_0", "intermediate", "kernel") == P("fsdp", "tensor")
    moments = {
        jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(abstract.opt_state)[0]
        if "word_embeddings" in jax.tree_util.keystr(path)
    }
    assert {k.split("['bert']")[0].rsplit(".", 1)[-1] for k in moments} == {"mu", "nu"}
    emb = next(iter(moments.values()))
    assert emb.sharding.spec == P("tensor", "fsdp")
    assert emb.sharding.shard_shape(emb.shape) == (128, 4)  # hidden 32 over 8
    assert abstract.step.sharding.spec == P()


def test_tensor_parallel_splits_heads_mlp_and_vocab():
    _, shardings = _abstract((2, 1, 4))
    params = shardings.params
    layer = params["bert"]["encoder"]["layer_0"]
    assert layer["attention"]["query"]["kernel"].spec == P("fsdp", "tensor", None)
    assert layer["attention"]["query"]["kernel"].shard_shape((32, 4, 8)) == (32, 1, 8)
    assert layer["attention"]["output"]["kernel"].spec == P("tensor", None, "fsdp")
    assert layer["intermediate"]["kernel"].shard_shape((32, 64)) == (32, 16)
    assert layer["output"]["kernel"].spec == P("tensor", "fsdp")
    assert params["bert"]["embeddings"]["word_embeddings"]["embedding"].shard_shape((128, 32)) == (32, 32)
    assert params["mlm"]["bias"].spec == P("tensor")
    assert layer["attention_LayerNorm"]["scale"].spec == P("fsdp")


def test_a_dimension_the_mesh_does_not_divide_stays_replicated():
    """A 130-token vocabulary over tensor=4 cannot split: replicated, not an error."""
    _, shardings = _abstract((2, 1, 4), vocab_size=130)
    assert shardings.params["bert"]["embeddings"]["word_embeddings"]["embedding"].spec == P(None, "fsdp")
    assert shardings.params["mlm"]["bias"].spec == P(None)
    assert shardings.params["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"].spec == P(
        "fsdp", "tensor"
    )


def test_batch_sharding_splits_over_data_and_fsdp():
    mesh = sharding.make_mesh(_mesh_cfg(2, 2, 2))
    assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))
    assert sharding.data_parallel_size(mesh) == 4
