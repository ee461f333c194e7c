"""Packed fine-tuning: several short examples a row, attention block-diagonal
by example, gives the one-example-a-row logits, losses and parameters to float
tolerance; only sequence heads pack; a bad `--config.packing` is one line."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from bert_jax.finetune import config as ft_config
from bert_jax.finetune import packing, trainer
from bert_jax.finetune import step as ft_step
from bert_jax.model import ModelConfig
from bert_jax.train import engine, sharding

SEQ = 64
VOCAB = 40
BUCKETS = (16, 32, 48, 64)


def _mask(lengths, seq=SEQ):
    return (np.arange(seq)[None, :] < np.asarray(lengths)[:, None]).astype(np.int32)


def _features(n: int, seed: int, max_len: int = 30) -> dict[str, np.ndarray]:
    """`n` right-padded pairs of lengths 3..max_len: segment 1 from the middle."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, max_len + 1, size=n)
    mask = _mask(lengths)
    return {
        "input_ids": (rng.integers(5, VOCAB, size=(n, SEQ)) * mask).astype(np.int32),
        "input_mask": mask,
        "segment_ids": ((np.arange(SEQ)[None, :] >= lengths[:, None] // 2) * mask).astype(np.int32),
        "labels": rng.integers(0, 2, size=n).astype(np.int32),
        "weights": np.ones(n, np.float32),
    }


# --------------------------------------------------------------------------
# The layout, on hand-made arrays


def test_first_fit_places_the_longest_first_in_the_first_row_with_room():
    row, start = packing.first_fit(np.array([10, 60, 30, 30, 5]), 64)
    # 60 opens row 0, 30 opens row 1, the second 30 joins it, 10 fits neither
    # (4 columns left in each) and opens row 2, 5 joins it after the 10.
    assert row.tolist() == [2, 0, 1, 1, 2]
    assert start.tolist() == [0, 0, 0, 30, 10]


def test_pack_width_is_the_longest_examples_bucket_but_at_least_64():
    assert packing.pack_width(10, BUCKETS) == 64
    assert packing.pack_width(10, (16, 32, 48, 64, 128)) == 64
    assert packing.pack_width(70, (16, 32, 48, 64, 128)) == 128
    assert packing.pack_width(10, (16, 32)) == 32  # rows never wider than max_seq_length


def test_row_step_is_an_eighth_of_the_batch_rounded_to_the_data_split():
    assert packing.row_step(32) == 4
    assert packing.row_step(32, multiple=8) == 8
    assert packing.row_step(4) == 1
    assert packing.row_step(24, multiple=2) == 4


def test_pack_puts_each_example_whole_in_a_row_as_its_own_document():
    batch = _features(16, seed=1)
    packed = packing.pack(batch, BUCKETS, step=4)
    rows, width = packed["input_ids"].shape
    assert width == SEQ and rows % 4 == 0 and rows < 16
    np.testing.assert_array_equal(packed["labels"], batch["labels"])
    np.testing.assert_array_equal(packed["weights"], batch["weights"])
    seen = np.zeros((rows, width), bool)
    for i, flat in enumerate(packed["pool_positions"]):
        r, s = divmod(int(flat), width)
        n = int(batch["input_mask"][i].sum())
        for key in ("input_ids", "input_mask", "segment_ids"):
            np.testing.assert_array_equal(packed[key][r, s : s + n], batch[key][i, :n])
        doc = packed["document_ids"][r, s]
        assert doc > 0 and (packed["document_ids"][r, s : s + n] == doc).all()
        assert (packed["document_ids"][r] == doc).sum() == n  # no other example shares the id
        assert not seen[r, s : s + n].any()
        seen[r, s : s + n] = True
    # what no example holds is padding: mask 0, document 0
    assert not packed["input_mask"][~seen].any() and not packed["document_ids"][~seen].any()


def test_pack_is_a_function_of_the_batch():
    batch = _features(16, seed=2)
    a, b = packing.pack(batch, BUCKETS, 4), packing.pack(batch, BUCKETS, 4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_an_example_without_real_tokens_still_gets_a_column():
    batch = _features(4, seed=3)
    batch["input_mask"][2] = 0  # a weight-0 filler row
    packed = packing.pack(batch, BUCKETS, 1)
    assert len(set(packed["pool_positions"].tolist())) == 4


# --------------------------------------------------------------------------
# Which batches pack


def _config(**overrides):
    c = ft_config.finetune_config("sst2")
    c.update(dict(max_seq_length=SEQ, batch_size=8, eval_batch_size=8, total_steps=3, learning_rate=1e-3,
                  log_every_steps=100))
    c.update(overrides)
    return c


@pytest.fixture(scope="module")
def mesh():
    return trainer.make_mesh(_config())


def test_sequence_heads_pack_by_default_and_token_and_span_heads_never(mesh):
    c = _config()
    assert c.packing is True
    split = sharding.data_parallel_size(mesh)  # rows split over the mesh's data axes
    assert trainer.pack_step(c, "classification", 32, mesh) == packing.row_step(32, split)
    assert trainer.pack_step(c, "regression", 32, mesh) == packing.row_step(32, split)
    assert trainer.pack_step(c, "token", 32, mesh) == 0
    assert trainer.pack_step(c, "span", 32, mesh) == 0


def test_packing_off_or_gradient_accumulation_keeps_one_example_a_row(mesh):
    assert trainer.pack_step(_config(packing=False), "classification", 32, mesh) == 0
    assert trainer.pack_step(_config(), "classification", 32, mesh, accum=2) == 0


def test_a_packing_value_that_is_not_a_bool_is_one_line_with_status_2(tmp_path):
    cmd = [sys.executable, "-m", "bert_jax.cli", "finetune", "--config=configs/finetune/glue.py",
           "--config.init_checkpoint=/nonexistent", "--config.packing=maybe", f"--workdir={tmp_path / 'w'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "bert-jax finetune: error: flag --config.packing=maybe: ('Non-boolean argument to boolean flag', 'maybe'); "
        "the config's packing is bool True: give a value of that type"
    )
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------
# The packed path equals the padded one on a tiny random model


def _model_cfg(**fields) -> ModelConfig:
    """Tiny BERT without dropout (dropout masks are drawn per shape, so with
    dropout on the two paths would differ by their random masks)."""
    return ModelConfig(vocab_size=VOCAB, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                       max_position_embeddings=SEQ + 2, hidden_dropout=0.0, attention_dropout=0.0, num_labels=2,
                       **fields)


def _params(cfg: ModelConfig, mesh):
    model = ft_step.make_model("classification", cfg)
    return model, ft_step.init_params(model, SEQ, jax.random.PRNGKey(1), {"bert": {}}, mesh,
                                      sharding.rules_of(_config().mesh))


@pytest.mark.parametrize(
    "fields",
    [{}, {"pooling": "mean"}, {"position_offset": 2, "pad_token_id": 1}],
    ids=["cls", "mean-pooling", "roberta-positions"],
)
def test_packed_classification_logits_equal_the_padded_ones(fields, mesh):
    model, params = _params(_model_cfg(**fields), mesh)
    predict_fn = ft_step.make_predict_step(model, "classification", mesh, sharding.rules_of(_config().mesh))
    feats = _features(21, seed=4)  # 21 rows: the last batch is partly filler
    if "pad_token_id" in fields:  # RoBERTa pads with id 1, and no real token is 1
        feats["input_ids"] = np.where(feats["input_mask"] == 1, feats["input_ids"], 1).astype(np.int32)
    padded = trainer.predict(predict_fn, params, feats, 8, mesh, "classification", ())
    step = trainer.pack_step(_config(), "classification", 8, mesh)  # rows split over the mesh, as a run's
    packed = trainer.predict(predict_fn, params, feats, 8, mesh, "classification", BUCKETS, pack_step=step)
    assert packed.shape == padded.shape == (21, 2)
    np.testing.assert_allclose(packed, padded, rtol=1e-5, atol=1e-5)


def _losses_and_params(feats, pack_step: int, mesh, steps: int = 2):
    """`steps` AdamW steps of the fine-tuning train step on `train_batches`
    (on one device: each shape compiles quicker than over the mesh)."""
    model, params = _params(_model_cfg(), mesh)
    params = jax.device_put(jax.device_get(params), jax.devices()[0])
    tx = trainer.make_optimizer(_config(), steps)
    rng = jax.random.PRNGKey(0)
    state, _ = engine.init_state(params, tx, rng)
    step = ft_step.make_train_step(model, "classification", tx)
    batches = trainer.train_batches(feats, 8, seed=5, buckets=BUCKETS if pack_step else (), pack_step=pack_step)
    losses, rows = [], []
    for _ in range(steps):
        batch = next(batches)
        rows.append(batch["input_ids"].shape[0])
        state, metrics = step(state, batch, rng)
        losses.append(float(metrics["loss"]))
    return np.array(losses), jax.device_get(state.params), rows


def test_packed_train_steps_give_the_one_example_a_row_losses_and_params(mesh):
    feats = _features(40, seed=6, max_len=20)
    losses_b, params_b, rows_b = _losses_and_params(feats, 0, mesh)
    losses_p, params_p, rows_p = _losses_and_params(feats, 2, mesh)
    assert set(rows_b) == {8} and max(rows_p) < 8  # several examples a row
    np.testing.assert_allclose(losses_p, losses_b, rtol=1e-5)
    for p, b in zip(jax.tree.leaves(params_p), jax.tree.leaves(params_b), strict=True):
        np.testing.assert_allclose(p, b, rtol=1e-5, atol=1e-6)
