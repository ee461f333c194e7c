"""int8 post-training quantisation (Qwix): close to float on a tiny model,
a checkpoint that restores, the quantize job's results.json, finetune's
predict mode on the quantised checkpoint, bad input."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import qwix
import toy_tasks

from bert_jax.compress import quantize
from bert_jax.compress.config import quantize_config
from bert_jax.errors import CheckpointError, UserError
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import glue, trainer
from bert_jax.model import BertForSequenceClassification, Embeddings

CFG = toy_tasks.tiny_config(vocab_size=60, num_layers=2, hidden_size=32, num_heads=4)


@pytest.fixture(scope="module")
def params():
    return toy_tasks.init_params(CFG, seed=3)


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


# A recipe other than the default in every field, quantised once for the module.
CUSTOM = quantize.Recipe("int8", "minmax", "token", (r"bert/encoder/layer_\d+/output",))


@pytest.fixture(scope="module")
def quantized(params, batch):
    """{recipe: Qwix params}: the two default schemes and CUSTOM, calibrated on `batch`."""
    return {r: quantize.quantize_params(CFG, params, r, [batch])
            for r in (quantize.Recipe("int8"), quantize.Recipe("int8_weights"), CUSTOM)}


def _args(batch):
    return batch["input_ids"], batch["input_mask"], batch["segment_ids"]


@pytest.mark.parametrize("recipe", [quantize.Recipe("int8"), quantize.Recipe("int8_weights"), CUSTOM],
                         ids=["int8", "int8_weights", "custom"])
def test_quantized_model_is_close_to_float(params, batch, quantized, recipe):
    logits = np.asarray(quantize.logits_fn(CFG, recipe)(quantized[recipe], *_args(batch)))
    reference = _float_logits(params, batch)
    np.testing.assert_allclose(_probs(logits), _probs(reference), atol=5e-3)
    assert not np.array_equal(logits, reference)  # something was quantised


def test_weights_are_int8_with_per_channel_scales(quantized):
    kernel = quantized[quantize.Recipe("int8_weights")]["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"].array
    assert kernel.qvalue.dtype == np.int8 and kernel.qvalue.shape == (32, 64)
    assert kernel.scale.shape == (1, 64)


def _first_input(params, batch):
    """The embeddings' output `[batch, seq, hidden]`: layer_0's query input, before any quantised op."""
    return np.asarray(Embeddings(CFG).apply({"params": params["bert"]["embeddings"]}, batch["input_ids"],
                                            batch["segment_ids"], True))


def _query_scale(qparams):
    return float(np.asarray(qparams["bert"]["encoder"]["layer_0"]["attention"]["query"]["dot_general0_lhs_scale"]
                            .array).squeeze())


def _tensor_scale(x):
    """Qwix's int8 scale for absmax = max |x| (one scale for the whole array)."""
    return float(np.asarray(qwix.quantize(jnp.asarray(x), jnp.int8).scale).squeeze())


def test_tensor_scope_scale_is_the_absmax_of_the_whole_input(params, batch, quantized):
    x = _first_input(params, batch)
    assert _query_scale(quantized[quantize.Recipe("int8")]) == pytest.approx(_tensor_scale(x), rel=1e-5)


def test_token_scope_scale_is_the_mean_token_absmax(params, batch):
    # Qwix's default: the average token's absmax, below the largest token's.
    x = _first_input(params, batch)
    qparams = quantize.quantize_params(CFG, params, quantize.Recipe("int8", act_scope="token"), [batch])
    ratio = np.abs(x).max(axis=-1).mean() / np.abs(x).max()
    assert _query_scale(qparams) == pytest.approx(_tensor_scale(x) * ratio, rel=1e-5) and ratio < 0.99


def test_float_inputs_keep_those_inputs_float_and_kernels_int8(quantized):
    names = quantize.to_tensors(quantized[CUSTOM])
    assert "['bert']['encoder']['layer_0']['output']['kernel'].array.qvalue" in names
    assert not any("['layer_0']['output']['dot_general0_lhs" in n for n in names)
    assert any("['layer_0']['intermediate']['dot_general0_lhs_scale']" in n for n in names)


def test_minmax_calibration_stores_zero_points(quantized):
    assert any("dot_general0_lhs_zero_point" in n for n in quantize.to_tensors(quantized[CUSTOM]))


def test_checkpoint_round_trip_and_size(tmp_path, params, batch, quantized):
    qparams = quantized[CUSTOM]
    nbytes = quantize.save_quantized(tmp_path / "q", CFG, qparams, CUSTOM)
    cfg, restored, recipe, meta = quantize.load_quantized(tmp_path / "q")
    assert (cfg, recipe, meta["format"]) == (CFG, CUSTOM, "bert-jax-quantized")
    fn = quantize.logits_fn(cfg, recipe)
    # Embeddings are stored int8 too, so the restored model differs a little.
    np.testing.assert_allclose(_probs(fn(restored, *_args(batch))), _probs(fn(qparams, *_args(batch))), atol=5e-3)
    assert nbytes == (tmp_path / "q" / quantize.WEIGHTS_FILE).stat().st_size
    assert nbytes < 0.45 * quantize.float_bytes(params)


def test_unknown_scheme_is_refused(params):
    with pytest.raises(UserError, match="unknown quantisation scheme 'int4'"):
        quantize.quantize_params(CFG, params, "int4")


def test_unknown_act_scope_is_refused():
    with pytest.raises(UserError, match="act_scope='channel'; expected 'tensor' or 'token'"):
        quantize.Recipe("int8", act_scope="channel")


def test_model_without_classifier_is_refused(params):
    encoder_only = {"bert": params["bert"]}
    with pytest.raises(UserError, match="no classification head"):
        quantize.quantize_params(CFG, encoder_only, "int8_weights")


def test_int8_without_calibration_data_is_refused(params):
    with pytest.raises(UserError, match="calibration"):
        quantize.quantize_params(CFG, params, "int8", [])


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """(toy GLUE dir, quantize's output dir, its results) for int8 on a tiny fine-tuned workdir."""
    root = tmp_path_factory.mktemp("job")
    vocab = toy_tasks.write_vocab(root / "vocab.txt")
    glue_dir = toy_tasks.write_sst2(root / "glue", n_train=32, n_dev=16)
    cfg = toy_tasks.tiny_config(len(vocab.read_text().split()))
    workdir = toy_tasks.write_finetuned_workdir(root / "ft", cfg, toy_tasks.init_params(cfg), vocab, glue_dir)
    results = quantize.run(quantize_config(scheme="int8", calibration_steps=2, throughput_runs=1), str(workdir), str(root / "q"))
    return glue_dir, root / "q", results


def test_quantize_job_writes_results(job):
    _, out, results = job
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results
    for side in ("float", "quantized"):
        assert set(on_disk[side]) == {"accuracy", "bytes", "examples_per_s"}
        assert 0.0 <= on_disk[side]["accuracy"] <= 1.0 and on_disk[side]["examples_per_s"] > 0
    assert on_disk["quantized"]["bytes"] < on_disk["float"]["bytes"]
    assert json.loads((out / "head.json").read_text())["task"] == "sst2"
    assert (on_disk["scheme"], on_disk["act_calibration"]) == ("int8", quantize.Recipe().act_calibration)


def _predict_config(glue_dir, checkpoint, out):
    c = ft_config.finetune_config("sst2")
    c.update(dict(mode="predict", init_checkpoint=str(checkpoint), data_dir=str(glue_dir), max_seq_length=16,
                  eval_batch_size=8, predict_file=str(glue_dir / "SST-2" / "dev.tsv"), predict_output=str(out)))
    return c


def test_predict_mode_equals_quantize_evaluation(job, tmp_path):
    glue_dir, qdir, results = job
    out = trainer.run(_predict_config(glue_dir, qdir, tmp_path / "p.tsv"), tmp_path,
                      restorers=(quantize.restore_for_predict,))
    predicted = [line.split("\t")[1] for line in out.read_text().splitlines()[1:]]
    gold = [line.split("\t")[1] for line in (glue_dir / "SST-2" / "dev.tsv").read_text().splitlines()[1:]]
    assert np.mean([p == g for p, g in zip(predicted, gold, strict=True)]) == results["quantized"]["accuracy"]
    # ... label by label, the quantised model as quantize restores it.
    cfg, qparams, recipe, meta = quantize.load_quantized(qdir)
    from bert_jax.tokenization import WordPieceTokenizer

    examples = glue.read_glue_file(glue.get_task("sst2"), glue_dir / "SST-2" / "dev.tsv", with_labels=False)
    feats = glue.encode(examples, WordPieceTokenizer(meta["vocab_file"]), 16)
    logits = quantize.logits_fn(cfg, recipe)(qparams, feats["input_ids"], feats["input_mask"], feats["segment_ids"])
    assert predicted == [str(i) for i in np.asarray(logits).argmax(-1)]


def test_restore_for_predict_ignores_other_checkpoints(job):
    glue_dir, qdir, _ = job
    assert quantize.restore_for_predict(glue_dir) is None


def test_quantized_checkpoint_without_head_is_refused_by_predict(job, tmp_path):
    import shutil

    _, qdir, _ = job
    shutil.copytree(qdir, tmp_path / "q")
    (tmp_path / "q" / "head.json").unlink()
    with pytest.raises(CheckpointError, match="q/head.json is missing"):
        quantize.restore_for_predict(tmp_path / "q")
