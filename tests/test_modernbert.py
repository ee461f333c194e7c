"""ModernBERT as configuration of the one encoder (issue 19, the architecture):
parity with transformers' `ModernBertModel` / `ModernBertForMaskedLM`, the
round trip through `convert`, and the settings the encoder refuses.

The reference model is a random tiny ModernBERT (float32, eager attention,
nothing downloaded) with 5 layers, global every 3 (layers 0 and 3 global,
the rest, the last one included, local) and a window of 8 tokens; inputs are
24 tokens, three windows long, padded and unpadded.
"""

import json
import os

os.environ.setdefault("USE_TF", "0")  # transformers must not import TensorFlow

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bert_jax import checkpoints, convert  # noqa: E402
from bert_jax.errors import CheckpointError, ConfigError  # noqa: E402
from bert_jax.model import BertForPreTraining, BertModel, Execution, ModelConfig, modernbert_fields  # noqa: E402

TOL = 1e-4
WINDOW = 8
SEQ = 24


def _hf_config(**kw):
    fields = dict(
        vocab_size=99,
        hidden_size=64,
        num_hidden_layers=5,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        local_attention=WINDOW,
        global_attn_every_n_layers=3,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        reference_compile=False,
        attn_implementation="eager",
    )
    fields.update(kw)
    return transformers.ModernBertConfig(**fields)


def _random_model(config):
    """A ModernBertForMaskedLM whose every weight (norms too) is random, so
    that a swapped or missing tensor shows."""
    torch.manual_seed(0)
    model = transformers.ModernBertForMaskedLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    model = _random_model(_hf_config())
    folder = tmp_path_factory.mktemp("hf") / "modernbert"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def imported(hf_folder):
    return checkpoints.load_model(hf_folder[1])


@pytest.fixture(scope="module")
def batch():
    """Three rows of 24 tokens: unpadded, padded after 15, padded after 7."""
    rng = np.random.RandomState(0)
    ids = rng.randint(3, 99, (3, SEQ)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 15:] = 0
    mask[2, 7:] = 0
    ids[mask == 0] = 0
    positions = np.array([[0, 5, 12, 23], [1, 9, 14, 3], [0, 2, 6, 4]], np.int32)
    return {"input_ids": ids, "input_mask": mask, "masked_lm_positions": positions}


@pytest.fixture(scope="module")
def reference(hf_folder, batch):
    """transformers' hidden states (embeddings, each layer) and MLM logits."""
    model = hf_folder[0]
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(batch["input_ids"]).long(),
            attention_mask=torch.tensor(batch["input_mask"]).long(),
            output_hidden_states=True,
        )
        encoder = model.model(
            input_ids=torch.tensor(batch["input_ids"]).long(),
            attention_mask=torch.tensor(batch["input_mask"]).long(),
        )
    return {
        "hidden_states": [h.numpy() for h in out.hidden_states],
        "last_hidden_state": encoder.last_hidden_state.numpy(),
        "logits": out.logits.numpy(),
    }


def _ours(cfg, params, batch, **kw):
    model = BertModel(cfg, add_pooler=False)
    return model.apply(
        {"params": params["bert"]}, batch["input_ids"], batch["input_mask"], return_all_hidden=True, **kw
    )


def _max_diff_at_real_tokens(a, b, mask):
    real = mask.astype(bool)
    return float(np.max(np.abs(np.asarray(a)[real] - np.asarray(b)[real])))


def test_hf_config_becomes_the_modernbert_encoder(imported):
    cfg = imported[0]
    assert cfg.family == "modernbert"
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) == (5, 64, 4, 96)
    assert (cfg.norm_position, cfg.feed_forward, cfg.position_embedding) == ("pre", "geglu", "rope")
    assert (cfg.norm_bias, cfg.linear_bias, cfg.final_norm, cfg.type_vocab_size) == (False, False, True, 0)
    assert (cfg.local_attention, cfg.global_attn_every_n_layers) == (WINDOW, 3)
    assert (cfg.global_rope_theta, cfg.local_rope_theta) == (160000.0, 10000.0)
    assert [cfg.layer_is_local(i) for i in range(5)] == [False, True, True, False, True]
    assert cfg.pair_head == "none" and sorted(imported[1]) == ["bert", "mlm"]


def test_parity_hidden_states_match_transformers_padded_and_unpadded(imported, reference, batch):
    cfg, params, _ = imported
    out = _ours(cfg, params, batch)
    mask = batch["input_mask"]
    assert len(out["hidden_states"]) == len(reference["hidden_states"]) == 6
    pairs = zip(out["hidden_states"], reference["hidden_states"], strict=True)
    diffs = [_max_diff_at_real_tokens(a, b, mask) for a, b in pairs]
    diffs.append(_max_diff_at_real_tokens(out["sequence_output"], reference["last_hidden_state"], mask))
    print(f"ModernBERT hidden-state max abs diffs (embeddings, 5 layers, final norm): {diffs}")
    assert max(diffs) < TOL
    assert mask[0].all()  # the unpadded row is among them


def test_parity_mlm_logits_match_transformers(imported, reference, batch):
    cfg, params, _ = imported
    positions = batch["masked_lm_positions"]
    want = np.take_along_axis(reference["logits"], positions[..., None], axis=1)
    for last_only in (True, False):
        model = BertForPreTraining(cfg.with_execution(Execution(last_layer_outputs_only=last_only)))
        got = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["input_mask"],
            np.zeros_like(batch["input_ids"]),
            positions,
        )["mlm_logits"]
        assert float(np.max(np.abs(np.asarray(got) - want))) < TOL, f"last_layer_outputs_only={last_only}"


def test_import_export_round_trip_is_bit_identical_in_transformers(hf_folder, tmp_path):
    model, folder = hf_folder
    summary = convert.import_checkpoint("hf", folder, tmp_path / "ours")
    assert summary["heads"] == ["mlm"]
    summary = convert.export_checkpoint(tmp_path / "ours", tmp_path / "hf")
    assert summary["architecture"] == "ModernBertForMaskedLM"
    reloaded = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "hf")
    assert type(reloaded).__name__ == "ModernBertForMaskedLM"
    want, got = model.state_dict(), reloaded.state_dict()
    assert sorted(got) == sorted(want)
    unequal = [k for k in want if not torch.equal(want[k], got[k])]
    assert unequal == []
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["local_attention"], config["global_attn_every_n_layers"]) == (WINDOW, 3)


def test_bare_encoder_exports_as_modernbert_model(imported, tmp_path):
    cfg, params, _ = imported
    summary = convert.export_hf({"bert": params["bert"]}, cfg, tmp_path / "hf")
    assert summary["architecture"] == "ModernBertModel"
    reloaded = transformers.AutoModel.from_pretrained(tmp_path / "hf")
    assert type(reloaded).__name__ == "ModernBertModel"


def test_tiny_config_builds_and_keeps_sharding_names():
    from bert_jax.config import family_config, validate_family

    cfg = validate_family(family_config("modernbert", "tiny"))
    model = BertForPreTraining(cfg)
    ids = np.zeros((2, 32), np.int32)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), ids, np.ones_like(ids), ids, np.zeros((2, 4), np.int32))
    )
    layer = variables["params"]["bert"]["encoder"]["layer_1"]
    assert layer["gate"]["kernel"].names == ("embed", "mlp")
    assert layer["attention"]["query"]["kernel"].names == ("embed", "heads", "kv")
    assert variables["params"]["bert"]["final_LayerNorm"]["scale"].names == ("embed",)
    assert "bias" not in layer["intermediate"] and "bias" not in layer["output_LayerNorm"]
    assert "attention_LayerNorm" not in variables["params"]["bert"]["encoder"]["layer_0"]


def _train_tiny(mesh_sizes):
    """Two train steps of a 2-layer ModernBERT (layer 0 global, layer 1
    local, window 4 of 16 tokens, last layer at the masked positions only)
    under the rule table: (losses, params)."""
    import ml_collections
    from train_utils import batch as train_batch
    from train_utils import tiny_config

    from bert_jax.config import model_config
    from bert_jax.train import optim, sharding, state, step

    fields = modernbert_fields(num_layers=2, num_heads=8, hidden_size=32, intermediate_size=64, local_attention=4)
    config = tiny_config(**{f"model.{k}": v for k, v in fields.items()})
    config.data.mode = "mlm_packed"
    cfg = model_config(config)
    axes = dict(zip(sharding.MESH_AXES, mesh_sizes, strict=True))
    devices = jax.devices()[: int(np.prod(mesh_sizes))]
    mesh = sharding.make_mesh(ml_collections.ConfigDict(axes), devices)
    opt = optim.make_optimizer(config.optimizer, 10)
    st, shardings = state.create_sharded_state(cfg, opt, mesh, 16, 4, seed=0)
    fn = step.make_train_step(cfg, opt, mesh, shardings)
    rng = jax.random.key_data(jax.random.key(1))
    losses = []
    for i in range(2):
        b = jax.device_put(train_batch(seed=i, batch_size=8), sharding.batch_sharding(mesh))
        st, metrics = fn(st, b, rng)
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(st.params)


@pytest.mark.slow
def test_train_step_on_a_three_axis_mesh_equals_one_device():
    """The new parameters (gate, final norm) and the windowed masks keep
    their logical names: the step shards over data, fsdp and tensor and
    computes what one device does."""
    one_losses, one_params = _train_tiny((1, 1, 1))
    mesh_losses, mesh_params = _train_tiny((2, 2, 2))
    assert np.isfinite(one_losses).all()
    np.testing.assert_allclose(mesh_losses, one_losses, rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), mesh_params, one_params)


# ---------------------------------------------------------------- bad input


def _modern(**kw):
    fields = modernbert_fields(
        vocab_size=99, hidden_size=64, num_layers=5, num_heads=4, intermediate_size=96,
        max_position_embeddings=64, local_attention=WINDOW,
    )
    fields.update(kw)
    return ModelConfig(**fields)


def test_window_larger_than_the_longest_sequence_is_refused():
    with pytest.raises(ConfigError, match=r"model.local_attention=128 is outside \[0, max_position_embeddings=64\]"):
        _modern(local_attention=128)


def test_global_every_zero_layers_is_refused():
    with pytest.raises(ConfigError, match=r"model.global_attn_every_n_layers=0; layer i is global when i % N == 0"):
        _modern(global_attn_every_n_layers=0)


def test_rope_with_learned_positions_is_refused():
    with pytest.raises(ConfigError, match=r"model.position_embedding='rope' with model.position_offset=2"):
        _modern(position_offset=2)


def test_scanning_layers_that_differ_is_refused():
    with pytest.raises(ConfigError, match=r"model.scan_layers=True needs identical layers.*set scan_layers=False"):
        _modern().with_execution(Execution(scan_layers=True))


def test_unknown_feed_forward_is_refused():
    with pytest.raises(ConfigError, match=r"model.feed_forward='swiglu'; expected one of mlp, geglu"):
        _modern(feed_forward="swiglu")


def test_hf_folder_of_unsupported_architecture_names_it_and_lists_modernbert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        CheckpointError,
        match=r"model_type='deberta-v2' is not supported; supported: .*"
        r"model_type 'modernbert' with architectures ModernBertModel, ModernBertForMaskedLM",
    ):
        checkpoints.load_model(tmp_path)


def test_hf_modernbert_head_we_do_not_build_is_refused(tmp_path):
    config = _hf_config(architectures=["ModernBertForMultipleChoice"]).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError,
        match=r"architectures=\['ModernBertForMultipleChoice'\] is not supported; "
        r"supported: ModernBertModel, ModernBertForMaskedLM, ModernBertForSequenceClassification, "
        r"ModernBertForTokenClassification$",
    ):
        checkpoints.load_model(tmp_path)


def test_convert_command_refuses_an_unsupported_modernbert_head_with_one_line(tmp_path):
    import subprocess
    import sys

    config = _hf_config(architectures=["ModernBertForMultipleChoice"]).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "convert", "--from=hf", f"--input={tmp_path}",
         f"--output={tmp_path / 'out'}"],
        capture_output=True, text=True, env=env,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("bert-jax convert: error: ") and "ModernBertForMultipleChoice" in last
    assert not (tmp_path / "out").exists()


def test_hf_modernbert_with_mixed_bias_flags_is_refused(tmp_path):
    config = _hf_config(attention_bias=True).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"one model.linear_bias .* these must be equal"):
        checkpoints.load_model(tmp_path)
