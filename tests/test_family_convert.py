"""Hugging Face interop for RoBERTa, XLM-R, CamemBERT and ALBERT: import,
export, round trips and numerical parity against randomly initialised
`transformers` models built here (float32, nothing downloaded).

`pytest -s -q tests/test_family_convert.py -k parity` prints the PARITY lines
quoted in docs/family.md.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bert_jax import checkpoints, convert  # noqa: E402
from bert_jax.errors import CheckpointError  # noqa: E402
from bert_jax.model import BertForPreTraining, BertForSequenceClassification, BertModel  # noqa: E402

TOL = 1e-4
SIZES = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=40,
)
# family -> (config class, bare model, MLM model, pre-training model or None, classifier)
FAMILIES = {
    "roberta": (
        "RobertaConfig",
        "RobertaModel",
        "RobertaForMaskedLM",
        None,
        "RobertaForSequenceClassification",
    ),
    "xlmr": (
        "XLMRobertaConfig",
        "XLMRobertaModel",
        "XLMRobertaForMaskedLM",
        None,
        "XLMRobertaForSequenceClassification",
    ),
    "camembert": (
        "CamembertConfig",
        "CamembertModel",
        "CamembertForMaskedLM",
        None,
        "CamembertForSequenceClassification",
    ),
    "albert": (
        "AlbertConfig",
        "AlbertModel",
        "AlbertForMaskedLM",
        "AlbertForPreTraining",
        "AlbertForSequenceClassification",
    ),
}


def _hf_config(family, **kw):
    fields = dict(SIZES)
    if family == "albert":
        fields.update(embedding_size=16, hidden_act="gelu_new", pad_token_id=0)
    else:
        fields.update(type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5)  # as roberta-base's config.json
    fields.update(kw)
    return getattr(transformers, FAMILIES[family][0])(**fields)


def _hf_model(family, which, folder, **kw):
    """A random HF model of `family` (which: 1 bare, 2 MLM, 3 pre-training, 4 classifier), saved."""
    torch.manual_seed(0)
    model = getattr(transformers, FAMILIES[family][which])(_hf_config(family, **kw)).eval()
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def batch():
    """Three rows, two padded (with the family's pad id); four MLM positions each."""
    rng = np.random.RandomState(0)
    ids = rng.randint(5, 99, (3, 16)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    mask[2, 5:] = 0
    positions = np.array([[1, 2, 7, 15], [0, 3, 9, 4], [1, 2, 3, 4]], np.int32)
    return ids, mask, positions


def _inputs(family, batch):
    """Our batch dict: RoBERTa pads with 1 and has one segment; ALBERT pads with 0, two segments."""
    ids, mask, positions = batch
    ids = np.where(mask == 1, ids, 0 if family == "albert" else 1).astype(np.int32)
    segments = np.zeros_like(ids)
    if family == "albert":
        segments[:, 3:] = 1
        segments[mask == 0] = 0
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segments, "masked_lm_positions": positions}


def _torch(inputs):
    return dict(
        input_ids=torch.tensor(inputs["input_ids"]).long(),
        attention_mask=torch.tensor(inputs["input_mask"]).long(),
        token_type_ids=torch.tensor(inputs["segment_ids"]).long(),
    )


def _report(label, diffs):
    print(f"\nPARITY {label} (3 layers, hidden 32): " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    for name, diff in diffs.items():
        assert diff < TOL, f"{label} {name}: max abs diff {diff}"


def _seq_diff(ours, theirs, mask):
    real = mask.astype(bool)
    return float(np.abs(np.asarray(ours)[real] - theirs[real]).max())


def _assert_trees_equal(a, b):
    fa, fb = checkpoints.flatten_params(a), checkpoints.flatten_params(b)
    assert sorted(fa) == sorted(fb)
    for path in fa:
        assert np.array_equal(fa[path], fb[path]), path


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize("family", ["roberta", "xlmr", "camembert", "albert"])
def test_parity_bare_model_hidden_states_and_pooler(family, batch, tmp_path):
    model, folder = _hf_model(family, 1, tmp_path / family)
    cfg, params, meta = checkpoints.load_model(folder)
    assert cfg.family == family and meta["format"] == "hf"
    inputs = _inputs(family, batch)
    ours = BertModel(cfg).apply(
        {"params": params["bert"]},
        inputs["input_ids"],
        inputs["input_mask"],
        inputs["segment_ids"],
        return_all_hidden=True,
    )
    with torch.no_grad():
        theirs = model(**_torch(inputs), output_hidden_states=True)
    mask = inputs["input_mask"]
    diffs = {
        f"hidden_{i}": _seq_diff(o, t.numpy(), mask)
        for i, (o, t) in enumerate(zip(ours["hidden_states"], theirs.hidden_states, strict=True))
    }
    diffs["sequence_output"] = _seq_diff(ours["sequence_output"], theirs.last_hidden_state.numpy(), mask)
    diffs["pooled_output"] = float(
        np.abs(np.asarray(ours["pooled_output"]) - theirs.pooler_output.numpy()).max()
    )
    _report(f"{FAMILIES[family][1]} import", diffs)


@pytest.mark.parametrize("family", ["roberta", "albert"])
def test_parity_pretraining_heads(family, batch, tmp_path):
    """RoBERTa: MLM head (dense, gelu, layer_norm, tied decoder + bias); ALBERT: MLM (H -> E) and SOP."""
    which = 3 if family == "albert" else 2
    model, folder = _hf_model(family, which, tmp_path / family)
    cfg, params, _ = checkpoints.load_model(folder)
    assert cfg.pair_head == ("sop" if family == "albert" else "none")
    inputs = _inputs(family, batch)
    ours = BertForPreTraining(cfg).apply({"params": params}, **inputs)
    with torch.no_grad():
        theirs = model(**_torch(inputs))
    logits = theirs.prediction_logits if family == "albert" else theirs.logits
    mlm = np.take_along_axis(logits.numpy(), inputs["masked_lm_positions"][..., None], axis=1)
    diffs = {"mlm_logits": float(np.abs(np.asarray(ours["mlm_logits"]) - mlm).max())}
    if family == "albert":
        diffs["sop_logits"] = float(np.abs(np.asarray(ours["pair_logits"]) - theirs.sop_logits.numpy()).max())
    else:
        assert "pair_logits" not in ours
    _report(f"{FAMILIES[family][which]} import", diffs)


@pytest.mark.parametrize("family", ["roberta", "albert"])
def test_parity_sequence_classifier(family, batch, tmp_path):
    model, folder = _hf_model(family, 4, tmp_path / family, num_labels=3)
    cfg, params, _ = checkpoints.load_model(folder)
    inputs = _inputs(family, batch)
    ours = BertForSequenceClassification(cfg).apply(
        {"params": params}, inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"]
    )
    with torch.no_grad():
        theirs = model(**_torch(inputs)).logits.numpy()
    _report(f"{FAMILIES[family][4]} import", {"logits": float(np.abs(np.asarray(ours) - theirs).max())})


# ---------------------------------------------------------------- round trips and export


@pytest.mark.parametrize(
    ("family", "which"),
    [("roberta", 2), ("roberta", 4), ("xlmr", 1), ("camembert", 2), ("albert", 3), ("albert", 4)],
)
def test_round_trip_is_bit_identical_and_loads_in_transformers(family, which, tmp_path):
    model, folder = _hf_model(family, which, tmp_path / "hf")
    convert.import_checkpoint("hf", folder, tmp_path / "ours")
    summary = convert.export_checkpoint(tmp_path / "ours", tmp_path / "back")
    assert summary["architecture"] == FAMILIES[family][which]
    from safetensors.numpy import load_file

    theirs, ours = load_file(folder / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    tied = (
        "lm_head.decoder.weight",
        "lm_head.decoder.bias",
        "predictions.decoder.weight",
        "predictions.decoder.bias",
    )
    theirs = {k: v for k, v in theirs.items() if not k.endswith(tied)}
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert np.array_equal(ours[name], theirs[name]), name
    _, first, _ = checkpoints.load_model(tmp_path / "ours")
    _, again, _ = checkpoints.load_model(tmp_path / "back")
    _assert_trees_equal(first, again)
    reloaded = transformers.AutoModel.from_pretrained(tmp_path / "back")
    assert type(reloaded).__name__ == FAMILIES[family][1]


def test_albert_params_really_hold_one_layer(tmp_path):
    _, folder = _hf_model("albert", 1, tmp_path / "hf")
    cfg, params, _ = checkpoints.load_model(folder)
    assert cfg.share_layers and cfg.num_layers == 3 and cfg.embedding_size == 16
    assert sorted(params["bert"]["encoder"]) == ["shared_layer"]
    assert params["bert"]["embeddings"]["word_embeddings"]["embedding"].shape == (99, 16)
    assert params["bert"]["embeddings"]["projection"]["kernel"].shape == (16, 32)


def test_roberta_config_becomes_model_config(tmp_path):
    _, folder = _hf_model("roberta", 1, tmp_path / "hf")
    cfg, _, _ = checkpoints.load_model(folder)
    assert (cfg.position_offset, cfg.pad_token_id, cfg.type_vocab_size, cfg.layer_norm_eps) == (2, 1, 1, 1e-5)
    assert (cfg.share_layers, cfg.embedding_size, cfg.pair_head) == (False, 0, "none")


def test_export_writes_the_family_tokenizer_files(tmp_path):
    _, folder = _hf_model("roberta", 2, tmp_path / "hf")
    (folder / "vocab.json").write_text(json.dumps({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    convert.import_checkpoint("hf", folder, tmp_path / "ours")
    assert {"vocab.json", "merges.txt"} <= set(os.listdir(tmp_path / "ours"))
    convert.export_checkpoint(tmp_path / "ours", tmp_path / "back")
    assert {"vocab.json", "merges.txt"} <= set(os.listdir(tmp_path / "back"))
    tokenizer_config = json.loads((tmp_path / "back" / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "RobertaTokenizer"


# ---------------------------------------------------------------- bad input


def test_unsupported_architecture_names_it_and_lists_the_supported(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "deberta-v2", "architectures": ["DebertaV2Model"]})
    )
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        CheckpointError,
        match=r"model_type='deberta-v2', architectures=\['DebertaV2Model'\] is not supported; supported: "
        r"model_type 'bert' .*'roberta' .*'xlm-roberta' .*'camembert' .*'albert' with architectures AlbertModel",
    ):
        checkpoints.load_model(tmp_path)


def test_roberta_config_with_an_unknown_head_is_refused(tmp_path):
    _, folder = _hf_model("roberta", 1, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["RobertaForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"architectures=\['RobertaForCausalLM'\] is not supported"):
        checkpoints.load_model(folder)


def test_albert_with_several_layer_groups_is_refused(tmp_path):
    _, folder = _hf_model("albert", 1, tmp_path / "hf", num_hidden_groups=2)
    with pytest.raises(
        CheckpointError, match="num_hidden_groups=2, inner_group_num=1; bert-jax shares one layer"
    ):
        checkpoints.load_model(folder)


def _cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", *args], capture_output=True, text=True, env=env
    )


def test_convert_command_detects_the_family_and_exports_it(tmp_path):
    _, folder = _hf_model("albert", 3, tmp_path / "hf")
    result = _cli("convert", "--from=hf", f"--input={folder}", f"--output={tmp_path / 'ours'}")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "ours" / "model_config.json").read_text())["family"] == "albert"
    result = _cli("convert", "--to=hf", f"--input={tmp_path / 'ours'}", f"--output={tmp_path / 'back'}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["architecture"] == "AlbertForPreTraining"


def test_convert_command_unsupported_family_exits_2_with_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "electra"}))
    result = _cli("convert", "--from=hf", f"--input={tmp_path}", f"--output={tmp_path / 'out'}")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("bert-jax convert: error: ") and "model_type='electra'" in last and "albert" in last
    )
