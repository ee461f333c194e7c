"""int8 post-training quantisation (Qwix): close to float on a tiny model,
a checkpoint that restores, the quantize job's results.json, bad input."""

import json

import jax
import numpy as np
import pytest

from bert_jax.compress import quantize, toy
from bert_jax.errors import UserError
from bert_jax.model import BertForSequenceClassification

CFG = toy.tiny_config(vocab_size=60, num_layers=2, hidden_size=32, num_heads=4)


@pytest.fixture(scope="module")
def params():
    return toy.init_params(CFG, seed=3)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 60, (8, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[:3, 7:] = 0
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids)}


def _float_logits(params, batch):
    model = BertForSequenceClassification(CFG)
    return np.asarray(model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"]))


def _probs(logits):
    return np.asarray(jax.nn.softmax(logits, -1))


@pytest.mark.parametrize("scheme", ["int8", "int8_weights"])
def test_quantized_model_is_close_to_float(params, batch, scheme):
    qparams = quantize.quantize_params(CFG, params, scheme, [batch])
    logits = np.asarray(quantize.logits_fn(CFG, scheme)(qparams, batch["input_ids"], batch["input_mask"],
                                                        batch["segment_ids"]))
    reference = _float_logits(params, batch)
    np.testing.assert_allclose(_probs(logits), _probs(reference), atol=5e-3)
    assert not np.array_equal(logits, reference)  # something was quantised


def test_weights_are_int8_with_per_channel_scales(params):
    qparams = quantize.quantize_params(CFG, params, "int8_weights")
    kernel = qparams["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"].array
    assert kernel.qvalue.dtype == np.int8 and kernel.qvalue.shape == (32, 64)
    assert kernel.scale.shape == (1, 64)


def test_int8_calibrates_activation_scales(params, batch):
    qparams = quantize.quantize_params(CFG, params, "int8", [batch])
    names = quantize.to_tensors(qparams)
    assert any("dot_general0_lhs_scale" in n for n in names)


def test_checkpoint_round_trip_and_size(tmp_path, params, batch):
    qparams = quantize.quantize_params(CFG, params, "int8", [batch])
    nbytes = quantize.save_quantized(tmp_path / "q", CFG, qparams, "int8")
    cfg, restored, scheme, meta = quantize.load_quantized(tmp_path / "q")
    assert (cfg, scheme, meta["format"]) == (CFG, "int8", "bert-jax-quantized")
    fn = quantize.logits_fn(cfg, scheme)
    args = (batch["input_ids"], batch["input_mask"], batch["segment_ids"])
    # Embeddings are stored int8 too, so the restored model differs a little.
    np.testing.assert_allclose(_probs(fn(restored, *args)), _probs(fn(qparams, *args)), atol=5e-3)
    assert nbytes == (tmp_path / "q" / quantize.WEIGHTS_FILE).stat().st_size
    assert nbytes < 0.45 * quantize.float_bytes(params)


def test_unknown_scheme_is_refused(params):
    with pytest.raises(UserError, match="unknown quantisation scheme 'int4'"):
        quantize.quantize_params(CFG, params, "int4")


def test_model_without_classifier_is_refused(params):
    encoder_only = {"bert": params["bert"]}
    with pytest.raises(UserError, match="no classification head"):
        quantize.quantize_params(CFG, encoder_only, "int8_weights")


def test_int8_without_calibration_data_is_refused(params):
    with pytest.raises(UserError, match="calibration"):
        quantize.quantize_params(CFG, params, "int8", [])


def test_quantize_job_writes_results(tmp_path):
    vocab = toy.write_vocab(tmp_path / "vocab.txt")
    glue = toy.write_sst2(tmp_path / "glue", n_train=32, n_dev=16)
    cfg = toy.tiny_config(len(vocab.read_text().split()))
    workdir = toy.write_finetuned_workdir(tmp_path / "ft", cfg, toy.init_params(cfg), vocab, glue)
    results = quantize.run(str(workdir), "int8", str(tmp_path / "q"), calibration_steps=2, throughput_runs=2)
    on_disk = json.loads((tmp_path / "q" / "results.json").read_text())
    assert on_disk == results
    for side in ("float", "quantized"):
        assert set(on_disk[side]) == {"accuracy", "bytes", "examples_per_s"}
        assert 0.0 <= on_disk[side]["accuracy"] <= 1.0 and on_disk[side]["examples_per_s"] > 0
    assert on_disk["quantized"]["bytes"] < on_disk["float"]["bytes"]
    assert json.loads((tmp_path / "q" / "head.json").read_text())["task"] == "sst2"
