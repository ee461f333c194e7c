"""The family by configuration: RoBERTa positions, ALBERT's factorised
embeddings and one shared layer, the pair heads, the family configs and the
checks that refuse families mixed."""

import importlib.util

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax.config import family_config, model_config, validate_family
from bert_jax.errors import ConfigError
from bert_jax.model import BertForPreTraining, BertModel, ModelConfig, count_params, position_ids_for

TINY = ModelConfig(
    vocab_size=50, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32, max_position_embeddings=20
)


def _init(cfg, model_cls=BertModel):
    """Unboxed params of `model_cls(cfg)`."""
    ids = jnp.ones((1, 4), jnp.int32)
    if model_cls is BertForPreTraining:
        variables = model_cls(cfg).init(jax.random.PRNGKey(0), ids, ids, 0 * ids, 0 * ids[:, :2])
    else:
        variables = model_cls(cfg).init(jax.random.PRNGKey(0), ids)
    return nn.meta.unbox(variables["params"])


def _layer_params(h: int, inter: int) -> int:
    """One post-LN encoder layer: q, k, v, output (H x H + H each), 2 LayerNorms, the MLP."""
    return 4 * (h * h + h) + 2 * 2 * h + (h * inter + inter) + (inter * h + h)


# ---- RoBERTa positions ----


def test_roberta_positions_count_real_tokens_from_pad_plus_one():
    cfg = TINY.replace(family="roberta", pad_token_id=1, position_offset=2, type_vocab_size=1)
    ids = jnp.array([[0, 7, 8, 2, 1, 1], [0, 9, 2, 1, 1, 1]])
    assert position_ids_for(ids, cfg).tolist() == [[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]]
    assert position_ids_for(ids, TINY).tolist() == [[0, 1, 2, 3, 4, 5]] * 2


def test_roberta_real_tokens_do_not_see_the_padding_that_follows():
    cfg = TINY.replace(family="roberta", pad_token_id=1, position_offset=2, type_vocab_size=1)
    params = _init(cfg)
    short = jnp.array([[0, 7, 8, 2]])
    padded = jnp.array([[0, 7, 8, 2, 1, 1]])
    a = BertModel(cfg).apply({"params": params}, short)["sequence_output"]
    b = BertModel(cfg).apply({"params": params}, padded, (padded != 1).astype(jnp.int32))["sequence_output"]
    np.testing.assert_allclose(a[0], b[0, :4], atol=1e-6)


# ---- ALBERT ----


def test_albert_sharing_holds_one_layers_parameters():
    shared, separate = TINY.replace(share_layers=True), TINY
    n_shared, n_separate = count_params(_init(shared)), count_params(_init(separate))
    assert n_separate - n_shared == (TINY.num_layers - 1) * _layer_params(16, 32)
    assert sorted(_init(shared)["encoder"]) == ["shared_layer"]


def test_albert_factorised_embeddings_are_e_wide_and_projected():
    cfg = TINY.replace(embedding_size=8, share_layers=True, family="albert")
    params = _init(cfg)
    assert params["embeddings"]["word_embeddings"]["embedding"].shape == (50, 8)
    assert params["embeddings"]["projection"]["kernel"].shape == (8, 16)
    out = BertModel(cfg).apply({"params": params}, jnp.ones((2, 5), jnp.int32))
    assert out["sequence_output"].shape == (2, 5, 16)
    expected = (50 + 20 + 2) * 8 + 2 * 8 + (8 * 16 + 16) + _layer_params(16, 32) + (16 * 16 + 16)
    assert count_params(params) == expected


def test_albert_mlm_head_projects_back_to_e_and_sop_has_two_logits():
    cfg = TINY.replace(embedding_size=8, share_layers=True, family="albert", pair_head="sop")
    params = _init(cfg, BertForPreTraining)
    assert params["mlm"]["dense"]["kernel"].shape == (16, 8)
    ids = jnp.ones((3, 6), jnp.int32)
    out = BertForPreTraining(cfg).apply({"params": params}, ids, ids, 0 * ids, jnp.zeros((3, 2), jnp.int32))
    assert out["mlm_logits"].shape == (3, 2, 50) and out["pair_logits"].shape == (3, 2)


def test_no_pair_head_has_no_pooler_and_no_pair_logits():
    cfg = TINY.replace(family="roberta", pad_token_id=1, position_offset=2, pair_head="none")
    params = _init(cfg, BertForPreTraining)
    assert "pair" not in params and "pooler" not in params["bert"]


# ---- families mixed: one ConfigError line each ----


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            dict(share_layers=True, position_offset=2),
            r"share_layers=True \(ALBERT\) with model.position_offset=2",
        ),
        (dict(embedding_size=32), "embedding_size=32 is larger than model.hidden_size=16"),
        (dict(family="roberta"), "family='roberta' needs RoBERTa positions"),
        (dict(family="xlmr", position_offset=2, share_layers=True), "share_layers=True"),
        (dict(family="albert", position_offset=2), "family='albert' with model.position_offset=2"),
        (dict(family="electra"), "model.family='electra'; expected one of bert, roberta"),
    ],
)
def test_mixed_family_settings_are_one_config_error(fields, message):
    with pytest.raises(ConfigError, match=message) as info:
        TINY.replace(**fields)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("family", "mode"), [("roberta", "nsp"), ("albert", "mlm_packed"), ("bert", "sop")])
def test_pair_head_must_match_data_mode(family, mode):
    config = family_config(family, "tiny")
    config.data.mode = mode
    with pytest.raises(ConfigError, match=f"trains on data.mode=.* but data.mode='{mode}'"):
        validate_family(config)


def test_roberta_with_two_token_types_is_refused():
    config = family_config("roberta", "tiny")
    config.model.type_vocab_size = 2
    with pytest.raises(ConfigError, match="has one token type"):
        validate_family(config)


# ---- the configs ----


def _load(repo_root, name):
    spec = importlib.util.spec_from_file_location(name, repo_root / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("size", ["base", "tiny"])
def test_roberta_and_xlmr_configs_follow_the_roberta_recipe(repo_root, size):
    for name, vocab in (("roberta", 50265), ("xlmr", 250002)):
        c = _load(repo_root, f"{name}_{size}")
        cfg = validate_family(c)
        assert (cfg.family, cfg.vocab_size, cfg.pair_head, cfg.position_offset, cfg.pad_token_id) == (
            name,
            vocab,
            "none",
            2,
            1,
        )
        assert (c.data.mode, c.data.masking, c.optimizer.name) == ("mlm_packed", "dynamic", "adamw")
        assert (c.optimizer.b2, c.optimizer.eps, c.batch_size) == (0.98, 1e-6, 8192)


@pytest.mark.parametrize("size", ["base", "tiny"])
def test_albert_configs_follow_the_albert_recipe(repo_root, size):
    c = _load(repo_root, f"albert_{size}")
    cfg = validate_family(c)
    assert (cfg.family, cfg.share_layers, cfg.embedding_size, cfg.pair_head) == ("albert", True, 128, "sop")
    assert (c.data.mode, c.data.ngram_max, c.optimizer.name) == ("sop", 3, "lamb")
    assert model_config(c).num_layers == {"base": 12, "tiny": 2}[size]
