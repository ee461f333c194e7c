"""Length buckets in fine-tuning: each batch cut to the smallest bucket that
holds its longest example gives the padded path's logits, losses and
parameters to float tolerance; bad `config.length_buckets` values are one
ConfigError line each."""

import subprocess
import sys

import jax
import numpy as np
import pytest
from train_utils import save_random_checkpoint

from bert_jax.errors import ConfigError
from bert_jax.finetune import buckets, tasks, trainer
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import step as ft_step
from bert_jax.model import ModelConfig
from bert_jax.train import engine, sharding

SEQ = 64
VOCAB = 40
BUCKETS = (16, 32, 48, 64)


# --------------------------------------------------------------------------
# Bucket choice and trimming on hand-made arrays


def test_auto_buckets_are_multiples_of_16_to_64_then_powers_of_two():
    assert buckets.auto_buckets(64) == (16, 32, 48, 64)
    assert buckets.auto_buckets(128) == (16, 32, 48, 64, 128)
    assert buckets.auto_buckets(512) == (16, 32, 48, 64, 128, 256, 512)
    assert buckets.auto_buckets(100) == (16, 32, 48, 64, 100)
    assert buckets.auto_buckets(16) == (16,)
    assert buckets.auto_buckets(12) == (12,)


def test_resolve_none_is_auto_empty_is_off_and_max_seq_length_is_always_last():
    assert buckets.resolve(None, 64) == (16, 32, 48, 64)
    assert buckets.resolve((), 64) == ()
    assert buckets.resolve((16, 32), 64) == (16, 32, 64)
    assert buckets.resolve([8, 64], 64) == (8, 64)


def test_the_default_config_buckets_automatically():
    c = ft_config.finetune_config("sst2")
    c.max_seq_length = 64
    assert c.length_buckets is None
    assert trainer.config_buckets(c) == (16, 32, 48, 64)


def test_choose_takes_the_smallest_bucket_that_holds_the_length():
    assert [buckets.choose(n, BUCKETS) for n in (0, 1, 16, 17, 32, 33, 48, 49, 64)] == [
        16, 16, 16, 32, 32, 48, 48, 64, 64,
    ]
    assert buckets.choose(70, BUCKETS) == 64  # never wider than the rows


def _mask(lengths, seq=SEQ):
    return (np.arange(seq)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)


def test_needed_length_is_the_last_real_token_of_any_row():
    assert buckets.needed_length({"input_mask": _mask([3, 17, 5])}) == 17
    assert buckets.needed_length({"input_mask": _mask([0, 0])}) == 0
    holes = np.zeros((2, SEQ), np.int32)
    holes[1, [0, 20]] = 1  # a hole before the last real token still counts to it
    assert buckets.needed_length({"input_mask": holes}) == 21


def test_needed_length_counts_weighted_token_positions():
    weights = np.zeros((2, SEQ), np.float32)
    weights[0, 40] = 1.0
    assert buckets.needed_length({"input_mask": _mask([3, 17]), "weights": weights}) == 41
    # 1-D (per-example) weights say nothing about columns
    assert buckets.needed_length({"input_mask": _mask([3, 17]), "weights": np.ones(2, np.float32)}) == 17


def test_to_bucket_cuts_inputs_and_token_targets_and_keeps_the_rest():
    ids = np.arange(2 * SEQ, dtype=np.int32).reshape(2, SEQ)
    token_labels = np.full((2, SEQ), -1, np.int32)
    token_labels[:, 1] = 3
    batch = {
        "input_ids": ids,
        "input_mask": _mask([10, 20]),
        "segment_ids": np.ones((2, SEQ), np.int32),
        "labels": token_labels,
        "weights": (token_labels >= 0).astype(np.float32),
    }
    cut = buckets.to_bucket(batch, BUCKETS)
    assert {k: v.shape for k, v in cut.items()} == {k: (2, 32) for k in batch}
    for k in batch:
        np.testing.assert_array_equal(cut[k], batch[k][:, :32])


def test_to_bucket_leaves_per_example_targets_whole():
    batch = {
        "input_ids": np.zeros((3, SEQ), np.int32),
        "input_mask": _mask([5, 9, 2]),
        "segment_ids": np.zeros((3, SEQ), np.int32),
        "labels": np.array([0, 1, 1], np.int32),
        "weights": np.array([1, 1, 0], np.float32),
    }
    cut = buckets.to_bucket(batch, BUCKETS)
    assert cut["input_ids"].shape == (3, 16)
    np.testing.assert_array_equal(cut["labels"], [0, 1, 1])
    np.testing.assert_array_equal(cut["weights"], [1, 1, 0])


def test_to_bucket_without_buckets_is_the_padded_batch():
    batch = {"input_ids": np.zeros((2, SEQ), np.int32), "input_mask": _mask([3, 4])}
    assert buckets.to_bucket(batch, ()) is batch


def test_span_heads_keep_the_padded_path():
    assert buckets.for_head("span", BUCKETS) == ()
    assert buckets.for_head("token", BUCKETS) == BUCKETS
    assert buckets.for_head("classification", BUCKETS) == BUCKETS


def test_length_order_is_stable_and_argsort_restores_it():
    order = buckets.length_order(_mask([30, 5, 30, 0, 5]))
    np.testing.assert_array_equal(order, [3, 1, 4, 0, 2])
    np.testing.assert_array_equal(np.arange(5)[order][np.argsort(order)], np.arange(5))


def test_pad_columns_pads_the_sequence_axis_with_zeros():
    x = np.ones((2, 3, 4), np.float32)
    out = buckets.pad_columns(x, 5)
    assert out.shape == (2, 5, 4)
    np.testing.assert_array_equal(out[:, :3], 1)
    np.testing.assert_array_equal(out[:, 3:], 0)


def test_train_batches_keep_rows_and_order_and_only_cut_columns():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 50, size=20)
    features = {"input_ids": rng.integers(5, VOCAB, size=(20, SEQ)).astype(np.int32) * _mask(lengths),
                "input_mask": _mask(lengths), "labels": np.arange(20, dtype=np.int32)}
    padded = trainer.train_batches(features, 8, seed=3)
    cut = trainer.train_batches(features, 8, seed=3, buckets=BUCKETS)
    for _ in range(6):
        p, c = next(padded), next(cut)
        width = c["input_ids"].shape[1]
        assert width == buckets.choose(int(lengths[p["labels"]].max()), BUCKETS)
        np.testing.assert_array_equal(c["labels"], p["labels"])
        np.testing.assert_array_equal(c["input_ids"], p["input_ids"][:, :width])
        assert not p["input_mask"][:, width:].any()


# --------------------------------------------------------------------------
# Bad config values: one ConfigError line each


@pytest.mark.parametrize(
    "value, message",
    [
        ((16, 128), "config.length_buckets=(16, 128) has 128 > config.max_seq_length=64; "
                    "drop it or raise max_seq_length"),
        ((32, 16), "config.length_buckets=(32, 16) is not strictly increasing; list the lengths smallest "
                   "first, e.g. (16, 32, 64)"),
        ((16, 16), "config.length_buckets=(16, 16) is not strictly increasing; list the lengths smallest "
                   "first, e.g. (16, 32, 64)"),
        ((4, 32), "config.length_buckets=(4, 32) has 4 < 8; use lengths of at least 8"),
        (("16",), "config.length_buckets=('16',) must be a tuple of sequence lengths, e.g. (16, 32, 64); "
                  "() turns bucketing off"),
        (32, "config.length_buckets=32 must be a tuple of sequence lengths, e.g. (16, 32, 64); "
             "() turns bucketing off"),
    ],
    ids=["above-max-seq-length", "decreasing", "repeated", "below-8", "not-ints", "not-a-tuple"],
)
def test_bad_length_buckets_are_one_config_error(value, message):
    with pytest.raises(ConfigError) as err:
        buckets.resolve(value, 64)
    assert str(err.value) == message


def test_finetune_command_refuses_bad_buckets_in_one_line_with_status_2(tmp_path):
    cmd = [sys.executable, "-m", "bert_jax.cli", "finetune", "--config=configs/finetune/glue.py",
           "--config.init_checkpoint=/nonexistent", "--config.max_seq_length=64",
           "--config.length_buckets=(16,128)", f"--workdir={tmp_path / 'w'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "bert-jax finetune: error: config.length_buckets=(16, 128) has 128 > config.max_seq_length=64; "
        "drop it or raise max_seq_length"
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------
# The bucketed path equals the padded one on a tiny random model


def _model_cfg(num_labels: int) -> ModelConfig:
    """Tiny BERT without dropout (dropout masks are drawn per shape, so with
    dropout on the two paths would differ by their random masks, not by the cut)."""
    return ModelConfig(vocab_size=VOCAB, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                       max_position_embeddings=SEQ, hidden_dropout=0.0, attention_dropout=0.0,
                       num_labels=num_labels)


def _features(n: int, seed: int, token: bool = False, max_len: int = 45) -> dict[str, np.ndarray]:
    """`n` rows of lengths 3..max_len (so batches land in several buckets), right-padded."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, max_len + 1, size=n)
    mask = _mask(lengths)
    feats = {
        "input_ids": (rng.integers(5, VOCAB, size=(n, SEQ)) * mask).astype(np.int32),
        "input_mask": mask,
        "segment_ids": ((np.arange(SEQ)[None, :] >= lengths[:, None] // 2) * mask).astype(np.int32),
    }
    if token:
        labels = np.where(mask == 1, rng.integers(0, 3, size=(n, SEQ)), -1).astype(np.int32)
        feats.update(labels=labels, weights=(labels >= 0).astype(np.float32))
    else:
        feats.update(labels=rng.integers(0, 2, size=n).astype(np.int32), weights=np.ones(n, np.float32))
    return feats


@pytest.fixture(scope="module")
def mesh():
    return trainer.make_mesh(_config())


def _config(**overrides):
    c = ft_config.finetune_config("sst2")
    # One example a row: these tests hold the cut against the padded path
    # (tests/test_finetune_packing.py holds packing against it).
    c.update(dict(max_seq_length=SEQ, batch_size=8, eval_batch_size=8, total_steps=4, learning_rate=1e-3,
                  log_every_steps=100, packing=False))
    c.update(overrides)
    return c


def _params(head: str, num_labels: int, mesh):
    model = ft_step.make_model(head, _model_cfg(num_labels))
    return model, ft_step.init_params(model, SEQ, jax.random.PRNGKey(1), {"bert": {}}, mesh,
                                      sharding.rules_of(_config().mesh))


def test_bucketed_classification_logits_equal_the_padded_ones(mesh):
    model, params = _params("classification", 2, mesh)
    predict_fn = ft_step.make_predict_step(model, "classification", mesh, sharding.rules_of(_config().mesh))
    feats = _features(21, seed=2)  # 21 rows: the last batch is partly filler
    padded = trainer.predict(predict_fn, params, feats, 8, mesh, "classification", ())
    bucketed = trainer.predict(predict_fn, params, feats, 8, mesh, "classification", BUCKETS)
    assert bucketed.shape == padded.shape == (21, 2)
    np.testing.assert_allclose(bucketed, padded, rtol=1e-5, atol=1e-5)


def test_bucketed_token_logits_equal_the_padded_ones_at_real_tokens(mesh):
    model, params = _params("token", 3, mesh)
    predict_fn = ft_step.make_predict_step(model, "token", mesh, sharding.rules_of(_config().mesh))
    feats = _features(21, seed=3, token=True)
    padded = trainer.predict(predict_fn, params, feats, 8, mesh, "token", ())
    bucketed = trainer.predict(predict_fn, params, feats, 8, mesh, "token", BUCKETS)
    assert bucketed.shape == padded.shape == (21, SEQ, 3)
    real = feats["input_mask"] == 1
    np.testing.assert_allclose(bucketed[real], padded[real], rtol=1e-5, atol=1e-5)
    # only padding is cut, and cut positions come back as zeros; padding
    # positions inside a batch's bucket keep the padded path's values
    cut = np.all(bucketed == 0, axis=-1)
    assert cut.any() and not (cut & real).any()
    kept = ~real & ~cut
    np.testing.assert_allclose(bucketed[kept], padded[kept], rtol=1e-5, atol=1e-5)


def test_bucketed_span_predictions_are_the_padded_ones(mesh):
    model, params = _params("span", 2, mesh)
    predict_fn = ft_step.make_predict_step(model, "span", mesh, sharding.rules_of(_config().mesh))
    feats = _features(9, seed=4)
    padded = trainer.predict(predict_fn, params, feats, 8, mesh, "span", ())
    bucketed = trainer.predict(predict_fn, params, feats, 8, mesh, "span", BUCKETS)
    for p, b in zip(padded, bucketed, strict=True):
        assert b.shape == p.shape == (9, SEQ)
        np.testing.assert_array_equal(b, p)


def _losses_and_params(head: str, num_labels: int, feats, bucket_set, mesh, steps: int = 3):
    """`steps` AdamW steps of the fine-tuning train step on `train_batches`
    (on one device: each bucket compiles quicker than over the mesh)."""
    model, params = _params(head, num_labels, mesh)
    params = jax.device_put(jax.device_get(params), jax.devices()[0])
    tx = trainer.make_optimizer(_config(), steps)
    rng = jax.random.PRNGKey(0)
    state, _ = engine.init_state(params, tx, rng)
    step = ft_step.make_train_step(model, head, tx)
    batches = trainer.train_batches(feats, 8, seed=5, buckets=bucket_set)
    losses, widths = [], []
    for _ in range(steps):
        batch = next(batches)
        widths.append(batch["input_ids"].shape[1])
        state, metrics = step(state, batch, rng)
        losses.append(float(metrics["loss"]))
    return np.array(losses), jax.device_get(state.params), widths


@pytest.mark.parametrize("head, num_labels", [("classification", 2), ("token", 3)])
def test_bucketed_train_steps_give_the_padded_losses_and_params(head, num_labels, mesh):
    feats = _features(40, seed=6, token=head == "token", max_len=28)  # few shapes: quick to compile
    losses_p, params_p, widths_p = _losses_and_params(head, num_labels, feats, (), mesh)
    losses_b, params_b, widths_b = _losses_and_params(head, num_labels, feats, BUCKETS, mesh)
    assert set(widths_p) == {SEQ} and max(widths_b) < SEQ  # the cut happened
    np.testing.assert_allclose(losses_b, losses_p, rtol=1e-5)
    for b, p in zip(jax.tree.leaves(params_b), jax.tree.leaves(params_p), strict=True):
        np.testing.assert_allclose(b, p, rtol=1e-5, atol=1e-6)


def _prepared(feats, dev) -> tasks.Prepared:
    def accuracy(logits):
        return {"accuracy": float(np.mean(logits.argmax(-1) == dev["labels"]))}

    return tasks.Prepared("sst2", "classification", 2, ["0", "1"], feats,
                          {"dev": tasks.EvalSet(dev, accuracy)}, "accuracy")


def test_fine_tune_with_buckets_reaches_the_padded_params_and_dev_score():
    feats, dev = _features(40, seed=7, max_len=28), _features(19, seed=8, max_len=28)
    runs = {}
    for name, value in (("padded", ()), ("bucketed", None)):
        config = _config(length_buckets=value, total_steps=3)
        runs[name] = trainer.fine_tune(config, _prepared(feats, dev), _model_cfg(2), {"bert": {}}, seed=0)
    (dev_p, step_p, params_p, _), (dev_b, step_b, params_b, _) = runs["padded"], runs["bucketed"]
    assert dev_b == dev_p and step_b == step_p
    for b, p in zip(jax.tree.leaves(params_b), jax.tree.leaves(params_p), strict=True):
        np.testing.assert_allclose(b, p, rtol=1e-5, atol=1e-6)


NER_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "lives", "in", "paris", "and", "rome", "."]
NER_SENTENCES = [
    ["john B-PER", "lives O", "in O", "paris B-LOC", "and O", "rome B-LOC", "and O", "paris B-LOC", ". O"],
    ["rome B-LOC"],
    ["john B-PER", "lives O", "in O", "rome B-LOC", ". O"],
    ["paris B-LOC", "and O", "rome B-LOC", "and O", "paris B-LOC", "and O", "rome B-LOC", "and O",
     "paris B-LOC", "and O", "rome B-LOC", "and O", "john B-PER", ". O"],
    ["john B-PER", ". O"],
]


def test_ner_predictions_with_buckets_are_the_padded_ones(tmp_path):
    """CoNLL rows of 3 to 16 tokens, out of length order: the bucketed
    predict mode (rows sorted by length, cut, put back) writes the same tags."""
    ckpt = save_random_checkpoint(tmp_path, NER_VOCAB, num_layers=1)
    conll = "\n\n".join("\n".join(s) for s in NER_SENTENCES) + "\n"
    (tmp_path / "train.txt").write_text(conll)
    (tmp_path / "dev.txt").write_text(conll)
    c = ft_config.finetune_config("ner")
    c.update(dict(init_checkpoint=str(ckpt), data_dir=str(tmp_path), train_file="train.txt", dev_file="dev.txt",
                  max_seq_length=32, batch_size=8, eval_batch_size=8, total_steps=1, length_buckets=()))
    trainer.run(c, tmp_path / "work")
    written = {}
    for name, value in (("padded", ()), ("bucketed", (8, 16))):
        c.mode, c.predict_file, c.length_buckets = "predict", str(tmp_path / "dev.txt"), value
        c.predict_output = str(tmp_path / f"{name}.txt")
        written[name] = trainer.run(c, tmp_path / "work").read_text()
    assert written["bucketed"] == written["padded"]
    assert len(written["padded"].strip().split("\n\n")) == len(NER_SENTENCES)
