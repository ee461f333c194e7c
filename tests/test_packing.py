"""Unpadded training (issue 19): packed rows with document-aware attention.

A packed row holds several documents one after another, `document_ids` 1, 2,
... per document and 0 for the padding at the end. The encoder then attends
block-diagonally by document (and through the sliding window on local
layers) and restarts positions (learned, RoBERTa's offset, RoPE) at each
document, so every document's outputs equal its outputs alone in a padded
row: for every family, hidden states and the masked-LM logits. The
pre-training step reads `document_ids` from the batch (MLM only), and
create-data's packed mode writes full rows with them.
"""

import functools
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax.config import family_config, validate_family
from bert_jax.data import create_data, instances, records
from bert_jax.data.dynamic_masking import MaskingOptions
from bert_jax.data.input_pipeline import PretrainingPipeline
from bert_jax.errors import ConfigError
from bert_jax.model import (
    BertForPreTraining,
    BertModel,
    ModelSpec,
    document_positions,
    modernbert_fields,
    position_ids_for,
)

TOL = 1e-5
SEQ = 24
SIZES = dict(vocab_size=60, hidden_size=16, num_heads=2, intermediate_size=32, max_position_embeddings=SEQ + 4)

FAMILIES = {
    "bert": ModelSpec(num_layers=2, **SIZES),
    "bert_scanned": ModelSpec(num_layers=2, scan_layers=True, **SIZES),
    "roberta": ModelSpec(num_layers=2, family="roberta", position_offset=2, pad_token_id=1, **SIZES),
    "albert": ModelSpec(num_layers=3, family="albert", embedding_size=8, share_layers=True, **SIZES),
    # Window 6 (3 tokens each side), layers 0 and 3 global, the last one local.
    "modernbert": ModelSpec(num_layers=5, **modernbert_fields(local_attention=6), **SIZES),
}

# Three documents of 9, 7 and 5 tokens in one row of 24 (3 padding tokens).
LENGTHS = (9, 7, 5)


def _documents(cfg):
    """Token ids of the documents: no pad id inside, a different start each."""
    rng = np.random.default_rng(0)
    low = cfg.pad_token_id + 1
    return [rng.integers(low, cfg.vocab_size, n).astype(np.int32) for n in LENGTHS]


def _packed_row(cfg, docs):
    """(input_ids, input_mask, document_ids) `[1, SEQ]`: the documents packed, padding at the end."""
    ids = np.full(SEQ, cfg.pad_token_id, np.int32)
    doc_ids = np.zeros(SEQ, np.int32)
    start = 0
    for number, doc in enumerate(docs, 1):
        ids[start : start + len(doc)] = doc
        doc_ids[start : start + len(doc)] = number
        start += len(doc)
    return ids[None], (doc_ids > 0).astype(np.int32)[None], doc_ids[None]


def _alone_row(cfg, doc):
    """(input_ids, input_mask) `[1, SEQ]`: one document, padded as today."""
    ids = np.full(SEQ, cfg.pad_token_id, np.int32)
    ids[: len(doc)] = doc
    return ids[None], (ids != cfg.pad_token_id).astype(np.int32)[None]


def _starts():
    return np.cumsum((0,) + LENGTHS[:-1])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_packed_document_has_the_hidden_states_it_has_alone(family):
    cfg = FAMILIES[family]
    docs = _documents(cfg)
    ids, mask, doc_ids = _packed_row(cfg, docs)
    model = BertModel(cfg)
    params = model.init(jax.random.PRNGKey(0), jnp.asarray(ids))["params"]
    packed = model.apply({"params": params}, ids, mask, document_ids=doc_ids, return_all_hidden=True)
    for doc, start in zip(docs, _starts(), strict=True):
        alone_ids, alone_mask = _alone_row(cfg, doc)
        alone = model.apply({"params": params}, alone_ids, alone_mask, return_all_hidden=True)
        span = slice(start, start + len(doc))
        for layer, (p, a) in enumerate(zip(packed["hidden_states"], alone["hidden_states"], strict=True)):
            np.testing.assert_allclose(p[0, span], a[0, : len(doc)], atol=TOL, err_msg=f"{family} layer {layer}")
        np.testing.assert_allclose(
            packed["sequence_output"][0, span], alone["sequence_output"][0, : len(doc)], atol=TOL
        )


@pytest.mark.parametrize("last_layer_outputs_only", [True, False])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_packed_document_has_the_masked_lm_logits_it_has_alone(family, last_layer_outputs_only):
    cfg = FAMILIES[family].replace(pair_head="none", last_layer_outputs_only=last_layer_outputs_only)
    docs = _documents(cfg)
    ids, mask, doc_ids = _packed_row(cfg, docs)
    # Two masked positions in each document (its second and last token).
    within = [(1, n - 1) for n in LENGTHS]
    packed_positions = np.array([[s + i for s, pair in zip(_starts(), within, strict=True) for i in pair]], np.int32)
    model = BertForPreTraining(cfg)
    zeros = jnp.zeros_like(ids)
    params = model.init(jax.random.PRNGKey(1), ids, mask, zeros, packed_positions)["params"]
    packed = model.apply({"params": params}, ids, mask, zeros, packed_positions, document_ids=doc_ids)
    logits = np.asarray(packed["mlm_logits"][0]).reshape(len(docs), 2, cfg.vocab_size)
    for number, (doc, pair) in enumerate(zip(docs, within, strict=True)):
        alone_ids, alone_mask = _alone_row(cfg, doc)
        alone = model.apply({"params": params}, alone_ids, alone_mask, zeros, np.array([pair], np.int32))
        np.testing.assert_allclose(logits[number], alone["mlm_logits"][0], atol=TOL, err_msg=f"document {number}")


def test_document_positions_restart_at_each_document_and_at_the_padding():
    doc_ids = jnp.array([[1, 1, 1, 2, 2, 3, 0, 0]])
    assert document_positions(doc_ids).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]


def test_roberta_positions_restart_after_the_pad_index_in_each_document():
    cfg = FAMILIES["roberta"]
    ids = jnp.array([[5, 6, 7, 8, 9, 1, 1]])
    doc_ids = jnp.array([[1, 1, 1, 2, 2, 0, 0]])
    # Alone, a document's tokens are at 2, 3, ...; padding at the pad index 1.
    assert position_ids_for(ids, cfg, doc_ids).tolist() == [[2, 3, 4, 2, 3, 1, 1]]


def test_without_document_ids_the_model_is_unchanged():
    """`document_ids=None` and one document covering the real tokens give the same states."""
    cfg = FAMILIES["modernbert"]
    ids, mask = _alone_row(cfg, _documents(cfg)[0])
    model = BertModel(cfg)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(0), jnp.asarray(ids))["params"])
    plain = model.apply({"params": params}, ids, mask)["sequence_output"]
    one_doc = model.apply({"params": params}, ids, mask, document_ids=mask)["sequence_output"]
    n = int(mask.sum())
    np.testing.assert_allclose(one_doc[0, :n], plain[0, :n], atol=TOL)


# ---- the pre-training step ----


def _packed_batch(cfg):
    """A packed pre-training batch (one row, two masked positions per document) and its documents."""
    docs = _documents(cfg)
    ids, mask, doc_ids = _packed_row(cfg, docs)
    positions = np.array([[s + i for s, n in zip(_starts(), LENGTHS, strict=True) for i in (1, n - 1)]], np.int32)
    batch = {
        "input_ids": ids,
        "input_mask": mask,
        "segment_ids": np.zeros_like(ids),
        "document_ids": doc_ids,
        "masked_lm_positions": positions,
        "masked_lm_ids": np.take_along_axis(ids, positions, 1),
        "masked_lm_weights": np.ones(positions.shape, np.float32),
        "next_sentence_labels": np.zeros(1, np.int32),
    }
    return batch, docs


def test_the_step_loss_sums_the_masked_tokens_of_every_packed_document():
    from bert_jax.train import step

    cfg = FAMILIES["modernbert"]
    batch, docs = _packed_batch(cfg)
    model = BertForPreTraining(cfg)
    params = model.init(jax.random.PRNGKey(2), *(batch[k] for k in model_inputs()))["params"]
    eval_step = jax.jit(functools.partial(step.eval_step, model_cfg=cfg))
    packed = eval_step(params, batch)
    assert float(packed["mlm_weight_sum"]) == 2 * len(docs)
    alone_sum = 0.0
    for doc in docs:
        ids, mask = _alone_row(cfg, doc)
        positions = np.array([[1, len(doc) - 1]], np.int32)
        alone = {
            **{k: batch[k] for k in ("segment_ids", "next_sentence_labels")},
            "input_ids": ids,
            "input_mask": mask,
            "masked_lm_positions": positions,
            "masked_lm_ids": np.take_along_axis(ids, positions, 1),
            "masked_lm_weights": np.ones((1, 2), np.float32),
        }
        alone_sum += float(eval_step(params, alone)["mlm_loss_sum"])
    np.testing.assert_allclose(float(packed["mlm_loss_sum"]), alone_sum, rtol=1e-5)


def _packed_step_metrics(mesh_sizes):
    """Metrics of one train step on four packed rows, on a (data, fsdp, tensor) mesh."""
    import ml_collections

    from bert_jax.train import optim, sharding, state, step

    cfg = FAMILIES["modernbert"]
    row, _ = _packed_batch(cfg)
    batch = {k: np.concatenate([v] * 4) for k, v in row.items()}
    mesh = sharding.make_mesh(
        ml_collections.ConfigDict(dict(zip(("data", "fsdp", "tensor"), mesh_sizes, strict=True))),
        devices=jax.devices()[: int(np.prod(mesh_sizes))],
    )
    opt = optim.make_optimizer(family_config("modernbert", "tiny").optimizer, 10)
    train_state, shardings = state.create_sharded_state(cfg, opt, mesh, SEQ, batch["masked_lm_positions"].shape[1], 0)
    fn = step.make_train_step(cfg, opt, mesh, shardings)
    _, metrics = fn(train_state, jax.device_put(batch, sharding.batch_sharding(mesh)), jax.random.PRNGKey(0))
    return jax.device_get(metrics)


def test_the_train_step_on_packed_rows_is_the_same_on_a_sharded_mesh_and_counts_real_tokens():
    one = _packed_step_metrics((1, 1, 1))
    sharded = _packed_step_metrics((2, 1, 2))  # DP=2 x TP=2
    assert float(one["real_tokens"]) == float(sharded["real_tokens"]) == 4 * sum(LENGTHS)
    assert np.isfinite(float(one["loss"]))
    np.testing.assert_allclose(float(sharded["loss"]), float(one["loss"]), rtol=2e-5)


def test_the_training_log_reports_real_tokens_per_second():
    import ml_collections

    from bert_jax.train import pretraining

    config = ml_collections.ConfigDict({"batch_size": 4})
    phase = type("Phase", (), {"seq_len": SEQ, "max_predictions": 6})()
    rates = pretraining._throughput(config, FAMILIES["bert"], phase, steps=10, seconds=2.0, real_tokens=63.0)
    assert rates["tokens_per_s"] == 10 * 4 * SEQ / 2.0
    assert rates["real_tokens_per_s"] == 10 * 63.0 / 2.0


def model_inputs():
    return ("input_ids", "input_mask", "segment_ids", "masked_lm_positions")


def test_packed_rows_given_to_a_model_with_a_pair_head_are_refused_in_one_line():
    from bert_jax.train import step

    cfg = FAMILIES["bert"]  # pair_head="nsp"
    batch, _ = _packed_batch(cfg)
    params = BertForPreTraining(cfg).init(jax.random.PRNGKey(0), *(batch[k] for k in model_inputs()))["params"]
    with pytest.raises(ConfigError) as error:
        step.eval_step(params, batch, model_cfg=cfg)
    message = str(error.value)
    assert "\n" not in message
    assert "model.pair_head='nsp'" in message and "set model.pair_head=none" in message


@pytest.mark.parametrize("family", ["modernbert", "roberta"])
def test_mlm_only_families_accept_data_mode_packed(family):
    config = family_config(family, "tiny")
    config.data.mode = "packed"
    assert validate_family(config).pair_head == "none"


def test_data_mode_packed_with_a_pair_head_is_one_config_error():
    config = family_config("bert", "tiny")
    config.data.mode = "packed"
    with pytest.raises(ConfigError) as error:
        validate_family(config)
    assert str(error.value) == (
        "model.pair_head='nsp' trains on data.mode='nsp' but data.mode='packed'; set one to match the other"
    )


# ---- create-data: packed rows ----

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
DOC_COUNT = 7
WORDS = [f"doc{d}" for d in range(DOC_COUNT)]
VOCAB = SPECIAL + WORDS + list("abcdefghijklmnopqrstuvwxyz")
PAD, CLS, SEP = (VOCAB.index(t) for t in ("[PAD]", "[CLS]", "[SEP]"))
PACKED_SEQ = 32


def test_pack_documents_cuts_the_framed_stream_into_full_rows():
    docs = [instances.Document(np.array(ids, np.int32), [0, len(ids)]) for ids in ([10, 11, 12], [20] * 9, [30, 31])]
    rows = instances.pack_documents(docs, 8, cls_id=2, sep_id=3)
    # Stream: [2 10 11 12 3] [2 20*9 3] [2 30 31 3], cut every 8 tokens.
    assert [r.ids.tolist() for r in rows] == [
        [2, 10, 11, 12, 3, 2, 20, 20],
        [20, 20, 20, 20, 20, 20, 20, 3],
        [2, 30, 31, 3],
    ]
    assert [r.documents.tolist() for r in rows] == [[1, 1, 1, 1, 1, 2, 2, 2], [1] * 8, [1, 1, 1, 1]]


@pytest.fixture(scope="module")
def packed_corpus(tmp_path_factory):
    """(vocab, corpus): DOC_COUNT documents of 5 to 40 tokens; every token of document d is `doc{d}`."""
    tmp = tmp_path_factory.mktemp("packed")
    vocab = tmp / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    rng = np.random.default_rng(0)
    lines = []
    for d in range(DOC_COUNT):
        length = int(rng.integers(5, 41))
        lines += [" ".join([f"doc{d}"] * length), ""]
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    return str(vocab), str(corpus)


def _create_packed(tmp_path, packed_corpus, **overrides):
    vocab, corpus = packed_corpus
    settings = dict(
        vocab_file=vocab, max_seq_length=PACKED_SEQ, max_predictions_per_seq=6, dupe_factor=1, mode="packed",
        input_format="sentences", block_size=100, random_seed=3,
    )
    settings.update(overrides)
    create_data.create_pretraining_data(create_data.CreateDataOptions(**settings), corpus, str(tmp_path / "out"))
    metadata = records.read_metadata(str(tmp_path / "out"))
    rows = [r for path in metadata["shard_paths"] for r in records.iter_records(path)]
    return metadata, records.parse_records(rows, metadata["features"])


def _unmasked(parsed):
    ids = parsed["input_ids"].copy()
    for row in range(len(ids)):
        real = parsed["masked_lm_weights"][row] > 0
        ids[row, parsed["masked_lm_positions"][row][real]] = parsed["masked_lm_ids"][row][real]
    return ids


def test_create_data_packed_rows_are_full_but_the_last_with_one_id_per_document(tmp_path, packed_corpus):
    metadata, parsed = _create_packed(tmp_path, packed_corpus)
    assert metadata["features"]["document_ids"] == {"dtype": "int64", "length": PACKED_SEQ}
    ids, doc_ids, mask = _unmasked(parsed), parsed["document_ids"], parsed["input_mask"]
    np.testing.assert_array_equal(mask, doc_ids > 0)
    lengths = mask.sum(axis=1)
    # Records are shuffled within the block: exactly one row is short, and it is padded at its end only.
    assert sorted(lengths.tolist())[1:] == [PACKED_SEQ] * (len(lengths) - 1)
    assert int((lengths < PACKED_SEQ).sum()) <= 1
    total = sum(int(n) + 2 for n in _document_lengths(packed_corpus))
    assert int(lengths.sum()) == total  # every token of every framed document, once
    for row in range(len(ids)):
        n = int(lengths[row])
        assert (ids[row, n:] == PAD).all() and (doc_ids[row, n:] == 0).all()
        runs = doc_ids[row, :n]
        assert runs[0] == 1 and set(np.diff(runs).tolist()) <= {0, 1}
        for number in range(1, int(runs.max()) + 1):
            tokens = ids[row, :n][runs == number]
            words = {VOCAB[t] for t in tokens} - {"[CLS]", "[SEP]"}
            assert len(words) == 1, f"row {row} document {number} mixes {words}"
            # A document opens with [CLS] unless it goes on from the row before; likewise for [SEP].
            inner = tokens[1:-1]
            assert not np.isin(inner, [CLS, SEP]).any()


def _document_lengths(packed_corpus):
    with open(packed_corpus[1], encoding="utf-8") as f:
        return [len(line.split()) for line in f.read().split("\n") if line]


def test_create_data_packed_static_masks_never_pick_padding_or_special_tokens(tmp_path, packed_corpus):
    _, parsed = _create_packed(tmp_path, packed_corpus)
    real = parsed["masked_lm_weights"] > 0
    assert real.sum() > 0
    assert not np.isin(parsed["masked_lm_ids"][real], [PAD, CLS, SEP]).any()
    lengths = parsed["input_mask"].sum(axis=1)
    assert (parsed["masked_lm_positions"] < lengths[:, None])[real].all()


def test_create_data_packed_is_deterministic(tmp_path, packed_corpus):
    _, first = _create_packed(tmp_path / "a", packed_corpus, dupe_factor=2)
    _, second = _create_packed(tmp_path / "b", packed_corpus, dupe_factor=2)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_packed_shards_round_trip_through_the_pipeline_with_document_ids(tmp_path, packed_corpus):
    _, parsed = _create_packed(tmp_path, packed_corpus)
    rows = len(parsed["input_ids"])
    pipeline = PretrainingPipeline(str(tmp_path / "out"), rows, shuffle_buffer=1, num_epochs=1, streams=1)
    batch = next(pipeline)
    assert batch["document_ids"].dtype == np.int32
    order = np.lexsort(batch["input_ids"].T[::-1])
    expected = np.lexsort(parsed["input_ids"].T[::-1])
    for name in ("input_ids", "input_mask", "document_ids", "masked_lm_positions"):
        np.testing.assert_array_equal(batch[name][order], parsed[name][expected], err_msg=name)


def test_packed_shards_dynamic_masking_never_picks_padding_or_special_tokens(tmp_path, packed_corpus):
    _create_packed(tmp_path, packed_corpus, masking="none")
    dynamic = MaskingOptions.from_tokens(VOCAB, masked_lm_prob=0.3, max_predictions_per_seq=12)
    pipeline = PretrainingPipeline(
        str(tmp_path / "out"), 4, masking="dynamic", dynamic=dynamic, shuffle_buffer=4, num_epochs=1, streams=1
    )
    batch = next(pipeline)
    assert batch["document_ids"].shape == batch["input_ids"].shape
    real = batch["masked_lm_weights"] > 0
    assert real.sum() > 0
    assert not np.isin(batch["masked_lm_ids"][real], [PAD, CLS, SEP]).any()
    positions = batch["masked_lm_positions"]
    assert (np.take_along_axis(batch["document_ids"], positions, 1)[real] > 0).all()


def test_create_data_packed_with_another_mode_is_refused_in_one_line(tmp_path, packed_corpus):
    vocab, corpus = packed_corpus
    result = subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "create-data", f"--input_file={corpus}",
         f"--output_file={tmp_path / 'out'}", f"--vocab_file={vocab}", "--packed", "--mode=nsp"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "bert-jax create-data: error: --packed with --mode=nsp: packed rows are MLM-only (no sentence pairs); "
        "drop --mode, or drop --packed"
    ]
    assert not (tmp_path / "out").exists()
