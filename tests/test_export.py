"""The SavedModel export: raw strings in, labels and probabilities out, equal
to predict mode (fine-tuning's encoding + the JAX model) on the same strings."""

import jax
import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf  # noqa: E402
import toy_tasks

from bert_jax.compress import export, models  # noqa: E402
from bert_jax.errors import UserError  # noqa: E402
from bert_jax.finetune import glue  # noqa: E402
from bert_jax.tokenization import WordPieceTokenizer  # noqa: E402

TEXTS = ["the movie is good .", "Awful plot, very dull!", "a", "", "lovely " * 30]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    vocab = toy_tasks.write_vocab(root / "vocab.txt")
    data = toy_tasks.write_sst2(root / "glue", n_train=8, n_dev=8)
    cfg = toy_tasks.tiny_config(len(vocab.read_text().split()))
    return toy_tasks.write_finetuned_workdir(root / "ft", cfg, toy_tasks.init_params(cfg, seed=5), vocab, data, max_seq_length=16)


@pytest.fixture(scope="module")
def served(workdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sm") / "model"
    summary = export.run(str(workdir), str(out))
    return summary, tf.saved_model.load(str(out)).signatures["serving_default"]


def _predict_mode(workdir, texts, seq_len):
    cfg, params, meta, _ = models.load_finetuned_classifier(workdir)
    tokenizer = WordPieceTokenizer(meta["vocab_file"], lower_case=True)
    examples = [glue.GlueExample(str(i), t, None, None) for i, t in enumerate(texts)]
    feats = glue.encode(examples, tokenizer, seq_len)
    logits = models.classifier_logits_fn(cfg)(params, feats["input_ids"], feats["input_mask"], feats["segment_ids"])
    return np.asarray(jax.nn.softmax(logits, -1))


def test_saved_model_equals_predict_mode(workdir, served):
    summary, serve = served
    out = serve(text=tf.constant(TEXTS))
    expected = _predict_mode(workdir, TEXTS, summary["max_seq_length"])
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(out["label_ids"].numpy(), expected.argmax(-1))
    assert [x.decode() for x in out["labels"].numpy()] == [str(i) for i in expected.argmax(-1)]


def test_in_graph_ids_equal_finetune_encoding(workdir):
    _, _, meta, _ = models.load_finetuned_classifier(workdir)
    tokenizer = WordPieceTokenizer(meta["vocab_file"], lower_case=True)
    got = export.tf_inputs(tokenizer, tf.constant(TEXTS), 16)
    want = glue.encode([glue.GlueExample(str(i), t, None, None) for i, t in enumerate(TEXTS)], tokenizer, 16)
    for key in ("input_ids", "input_mask", "segment_ids"):
        np.testing.assert_array_equal(got[key].numpy(), want[key])


def test_exporting_a_model_without_classifier_is_refused(tmp_path):
    from bert_jax import checkpoints

    vocab = toy_tasks.write_vocab(tmp_path / "vocab.txt")
    cfg = toy_tasks.tiny_config(len(vocab.read_text().split()))
    params = toy_tasks.init_params(cfg)
    checkpoints.save_model(tmp_path / "enc", cfg, {"bert": params["bert"]}, vocab_file=str(vocab))
    with pytest.raises(UserError, match="no classification head"):
        export.run(str(tmp_path / "enc"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_unknown_format_is_refused(workdir, tmp_path):
    with pytest.raises(UserError, match="--format='onnx'"):
        export.run(str(workdir), str(tmp_path / "out"), fmt="onnx")
