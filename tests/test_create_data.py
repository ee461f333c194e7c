"""create-data: instances, masking, layouts, determinism, atomic shards, metadata, bad input.

The synthetic corpus makes every token say where it came from: sentence j of
document d is the word `d{d}s{j}` repeated, so a record's ids can be traced
back to (document, sentence).
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_jax.data import corpus, create_data, instances, masking, records
from bert_jax.errors import ConfigError, DataError

DOCS, SENTENCES = 12, 8
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"d{d}s{j}" for d in range(DOCS + 2) for j in range(SENTENCES)]
VOCAB = SPECIAL + WORDS + ["##x", "."] + list("abcdefghijklmnopqrstuvwxyz0123456789")


@pytest.fixture(scope="session")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    return str(path)


def _sentence(d: int, j: int, rng: np.random.Generator, wwm: bool = False) -> str:
    word = f"d{d}s{j}" + ("x" if wwm and j % 2 else "")
    return " ".join([word] * int(rng.integers(3, 15)))


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """DOCS documents of SENTENCES sentences, in the original one-sentence-per-line format."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    lines = []
    for d in range(DOCS):
        lines += [_sentence(d, j, rng) for j in range(SENTENCES)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


def _options(vocab, **overrides):
    settings = dict(vocab_file=vocab, max_seq_length=32, dupe_factor=3, input_format="sentences", block_size=4)
    settings.update(overrides)
    return create_data.CreateDataOptions(**settings)


def _create(tmp_path, vocab_file, corpus_file, name="out", **overrides):
    summary = create_data.create_pretraining_data(_options(vocab_file, **overrides), corpus_file, str(tmp_path / name))
    return summary, _read(summary, tmp_path / name)


def _read(summary, directory) -> dict[str, np.ndarray]:
    metadata = records.read_metadata(str(directory))
    rows = [r for path in metadata["shard_paths"] for r in records.iter_records(path)]
    return records.parse_records(rows, metadata["features"])


def _origin(token_id: int) -> tuple[int, int]:
    """(document, sentence) of a corpus token id."""
    d, j = VOCAB[token_id][1:].split("s")
    return int(d), int(j.rstrip("x"))


def _unmasked(parsed, row) -> np.ndarray:
    ids = parsed["input_ids"][row].copy()
    weights = parsed["masked_lm_weights"][row] > 0
    ids[parsed["masked_lm_positions"][row][weights]] = parsed["masked_lm_ids"][row][weights]
    return ids


def _segments(ids: np.ndarray, segment_ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    sep = VOCAB.index("[SEP]")
    assert ids[0] == VOCAB.index("[CLS]") and ids[length - 1] == sep
    first_sep = int(np.flatnonzero(ids[:length] == sep)[0])
    return ids[1:first_sep], ids[first_sep + 1 : length - 1]


@pytest.fixture(scope="session")
def nsp_data(tmp_path_factory, vocab_file, corpus_file):
    tmp = tmp_path_factory.mktemp("nsp")
    return _create(tmp, vocab_file, corpus_file, num_shards=2, dupe_factor=6)


# ---- layout and NSP rules ----


def test_nsp_layout_lengths_and_padding(nsp_data):
    _, parsed = nsp_data
    cls, sep = VOCAB.index("[CLS]"), VOCAB.index("[SEP]")
    for row in range(len(parsed["input_ids"])):
        ids, mask, segs = _unmasked(parsed, row), parsed["input_mask"][row], parsed["segment_ids"][row]
        length = int(mask.sum())
        assert length <= 32 and mask[:length].all() and not mask[length:].any()
        assert not ids[length:].any() and not segs[length:].any()
        a, b = _segments(ids, segs, length)
        assert len(a) >= 1 and len(b) >= 1
        assert cls not in a and sep not in a and sep not in b
        # [CLS] A [SEP] have segment 0, B [SEP] segment 1.
        assert not segs[: len(a) + 2].any() and segs[len(a) + 2 : length].all()


def test_nsp_label_1_comes_from_another_document_of_the_block(nsp_data):
    _, parsed = nsp_data
    labels = parsed["next_sentence_labels"][:, 0]
    assert set(labels.tolist()) == {0, 1}
    for row in np.flatnonzero(labels == 1):
        length = int(parsed["input_mask"][row].sum())
        a, b = _segments(_unmasked(parsed, row), parsed["segment_ids"][row], length)
        docs_a = {_origin(t)[0] for t in a}
        docs_b = {_origin(t)[0] for t in b}
        assert len(docs_a) == 1 and len(docs_b) == 1 and docs_a != docs_b
        # Neighbourhood: block_size=4 consecutive documents.
        assert docs_a.pop() // 4 == docs_b.pop() // 4


def test_nsp_label_0_continues_the_same_document_in_order(nsp_data):
    _, parsed = nsp_data
    labels = parsed["next_sentence_labels"][:, 0]
    for row in np.flatnonzero(labels == 0):
        length = int(parsed["input_mask"][row].sum())
        a, b = _segments(_unmasked(parsed, row), parsed["segment_ids"][row], length)
        origins_a, origins_b = [_origin(t) for t in a], [_origin(t) for t in b]
        assert len({d for d, _ in origins_a + origins_b}) == 1
        order = [j for _, j in origins_a + origins_b]
        assert order == sorted(order)
        assert max(j for _, j in origins_a) < min(j for _, j in origins_b)


def test_truncate_seq_pair_follows_the_original_rule():
    # Longer side first, B on ties, then alternating.
    assert instances.truncate_pair_lengths(10, 4, 10) == (4, 0)
    assert instances.truncate_pair_lengths(5, 5, 7) == (1, 2)
    assert instances.truncate_pair_lengths(3, 9, 6) == (0, 6)
    assert instances.truncate_pair_lengths(8, 6, 9) == (3, 2)
    assert instances.truncate_pair_lengths(2, 2, 10) == (0, 0)
    for len_a, len_b, limit in [(10, 4, 10), (5, 5, 7), (8, 6, 9), (1, 30, 5)]:
        a, b, cut_a, cut_b = len_a, len_b, 0, 0
        while a + b > limit:  # the original loop, for reference
            if a > b:
                a, cut_a = a - 1, cut_a + 1
            else:
                b, cut_b = b - 1, cut_b + 1
        assert instances.truncate_pair_lengths(len_a, len_b, limit) == (cut_a, cut_b)


# ---- masking ----


def test_number_of_predictions_and_no_special_token_masked(nsp_data):
    summary, parsed = nsp_data
    specials = {VOCAB.index(t) for t in ("[CLS]", "[SEP]", "[PAD]")}
    for row in range(len(parsed["input_ids"])):
        length = int(parsed["input_mask"][row].sum())
        weights = parsed["masked_lm_weights"][row]
        count = int(weights.sum())
        assert count == min(20, max(1, round(length * 0.15)))
        assert weights[:count].all() and not weights[count:].any()
        positions = parsed["masked_lm_positions"][row][:count]
        assert (np.diff(positions) > 0).all() and (positions < length).all()
        original = _unmasked(parsed, row)
        assert not specials & set(original[positions].tolist())
    assert summary["counts"]["masked_positions"] == int(parsed["masked_lm_weights"].sum())


def _binomial_ok(successes: int, n: int, p: float) -> bool:
    """Within 5 standard deviations of n * p (a false alarm about once in 3.5 million runs)."""
    return abs(successes - n * p) <= 5 * math.sqrt(n * p * (1 - p))


def test_masking_80_10_10_within_binomial_tolerance():
    vocab_size, mask_id = 1000, 4
    rng = np.random.default_rng(7)
    n, seq = 4000, 64
    input_ids = rng.integers(5, vocab_size, (n, seq)).astype(np.int32)
    lengths = np.full(n, seq)
    maskable = np.ones((n, seq), bool)
    maskable[:, 0] = maskable[:, -1] = False
    out = masking.mask_batch(
        input_ids, lengths, maskable, masked_lm_prob=0.15, max_predictions_per_seq=20,
        vocab_size=vocab_size, mask_id=mask_id, rng=rng,
    )
    valid = out["masked_lm_weights"] > 0
    rows = np.nonzero(valid)[0]
    now = out["input_ids"][rows, out["masked_lm_positions"][valid]]
    before = out["masked_lm_ids"][valid]
    total = int(valid.sum())
    assert total == n * 10  # round(64 * 0.15) = 10 per row
    # A random replacement is [MASK] or the original with probability 1/vocab_size each.
    p_mask = 0.8 + 0.1 / vocab_size
    p_same = 0.1 + 0.1 / vocab_size
    assert _binomial_ok(int((now == mask_id).sum()), total, p_mask)
    assert _binomial_ok(int((now == before).sum()), total, p_same)
    assert _binomial_ok(int(((now != mask_id) & (now != before)).sum()), total, 1 - p_mask - p_same)
    # Unchosen positions are untouched.
    untouched = np.ones((n, seq), bool)
    untouched[rows, out["masked_lm_positions"][valid]] = False
    assert (out["input_ids"][untouched] == input_ids[untouched]).all()


def test_masked_positions_are_uniform_over_candidates():
    rng = np.random.default_rng(3)
    n, seq = 3000, 20
    maskable = np.ones((n, seq), bool)
    maskable[:, [0, 7, 19]] = False
    out = masking.mask_batch(
        np.full((n, seq), 9, np.int32), np.full(n, seq), maskable, masked_lm_prob=0.15,
        max_predictions_per_seq=5, vocab_size=50, mask_id=4, rng=rng,
    )
    hits = np.bincount(out["masked_lm_positions"][out["masked_lm_weights"] > 0], minlength=seq)
    assert hits[[0, 7, 19]].sum() == 0
    per_position = 3 / 17  # round(20 * 0.15) = 3 chosen of 17 candidates
    for position in np.flatnonzero(maskable[0]):
        assert _binomial_ok(int(hits[position]), n, per_position)


def test_whole_word_masking_keeps_words_whole(tmp_path, vocab_file):
    rng = np.random.default_rng(1)
    path = tmp_path / "wwm.txt"
    path.write_text(
        "\n\n".join("\n".join(_sentence(d, j, rng, wwm=True) for j in range(SENTENCES)) for d in range(4)),
        encoding="utf-8",
    )
    _, parsed = _create(tmp_path, vocab_file, str(path), do_whole_word_mask=True, masked_lm_prob=0.3)
    continuation = VOCAB.index("##x")
    boundaries = (VOCAB.index("[CLS]"), VOCAB.index("[SEP]"))
    whole_word_masks = 0
    for row in range(len(parsed["input_ids"])):
        original = _unmasked(parsed, row)
        weights = parsed["masked_lm_weights"][row] > 0
        masked = set(parsed["masked_lm_positions"][row][weights].tolist())
        length = int(parsed["input_mask"][row].sum())
        assert len(masked) <= min(20, max(1, round(length * 0.3)))
        for position in range(1, length):
            # A "##" piece right after [CLS]/[SEP] (its head cut off by truncation) is a word of its own.
            if original[position] == continuation and original[position - 1] not in boundaries:
                assert (position in masked) == (position - 1 in masked)
                whole_word_masks += position in masked
    assert whole_word_masks > 0


def test_ngram_masking_masks_runs_of_adjacent_tokens(tmp_path, vocab_file, corpus_file):
    """ALBERT's --ngram_max=3 against single tokens on the same corpus: the
    same budget per row, and more masked positions next to another masked one."""
    adjacent = {}
    for ngram in (1, 3):
        _, parsed = _create(tmp_path, vocab_file, corpus_file, name=f"ngram{ngram}", ngram_max=ngram, masked_lm_prob=0.3)
        pairs = total = 0
        for row in range(len(parsed["input_ids"])):
            weights = parsed["masked_lm_weights"][row] > 0
            masked = sorted(parsed["masked_lm_positions"][row][weights].tolist())
            length = int(parsed["input_mask"][row].sum())
            assert 1 <= len(masked) <= min(20, max(1, round(length * 0.3)))
            pairs += sum(b == a + 1 for a, b in zip(masked[:-1], masked[1:], strict=True))
            total += len(masked)
        adjacent[ngram] = pairs / total
    assert adjacent[3] > adjacent[1] + 0.1


def test_masking_none_leaves_out_the_mlm_features(tmp_path, vocab_file, corpus_file):
    summary, parsed = _create(tmp_path, vocab_file, corpus_file, masking="none")
    assert not set(records.MLM_FEATURES) & set(summary["features"])
    assert set(parsed) == {"input_ids", "input_mask", "segment_ids", "next_sentence_labels"}
    assert VOCAB.index("[MASK]") not in parsed["input_ids"]
    assert summary["settings"]["masking"] == "none"


# ---- SOP and packed ----


def test_sop_pairs_are_in_order_or_swapped_within_one_document(tmp_path, vocab_file, corpus_file):
    _, parsed = _create(tmp_path, vocab_file, corpus_file, mode="sop")
    labels = parsed["next_sentence_labels"][:, 0]
    assert set(labels.tolist()) == {0, 1}
    for row in range(len(labels)):
        length = int(parsed["input_mask"][row].sum())
        a, b = _segments(_unmasked(parsed, row), parsed["segment_ids"][row], length)
        origins_a, origins_b = [_origin(t) for t in a], [_origin(t) for t in b]
        assert len({d for d, _ in origins_a + origins_b}) == 1
        first, second = (origins_a, origins_b) if labels[row] == 0 else (origins_b, origins_a)
        assert max(j for _, j in first) <= min(j for _, j in second)


def test_mlm_packed_fills_sequences_across_documents(tmp_path, vocab_file, corpus_file):
    summary, parsed = _create(tmp_path, vocab_file, corpus_file, mode="mlm_packed", dupe_factor=1, block_size=100)
    cls, sep = VOCAB.index("[CLS]"), VOCAB.index("[SEP]")
    assert not parsed["segment_ids"].any() and not parsed["next_sentence_labels"].any()
    lengths = parsed["input_mask"].sum(axis=1)
    crosses = 0
    for row in range(len(lengths)):
        ids = _unmasked(parsed, row)[: lengths[row]]
        assert ids[0] == cls and ids[-1] == sep
        body = ids[1:-1]
        crosses += int((body == sep).sum())
        origins = [_origin(t) for t in body if t != sep]
        assert origins == sorted(origins)
    assert crosses > 0
    # Every corpus token lands in exactly one sequence (one dupe, nothing lost).
    tokens = sum(1 for row in range(len(lengths)) for t in _unmasked(parsed, row)[1 : lengths[row] - 1] if t != sep)
    assert tokens == summary["counts"]["tokens"]


# ---- determinism and parallelism ----


def _shard_bytes(directory) -> list[bytes]:
    metadata = records.read_metadata(str(directory))
    return [open(p, "rb").read() for p in metadata["shard_paths"]]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, vocab_file, corpus_file):
    _create(tmp_path, vocab_file, corpus_file, name="a", num_shards=3)
    _create(tmp_path, vocab_file, corpus_file, name="b", num_shards=3)
    _create(tmp_path, vocab_file, corpus_file, name="c", num_shards=3, random_seed=99)
    assert _shard_bytes(tmp_path / "a") == _shard_bytes(tmp_path / "b")
    assert _shard_bytes(tmp_path / "a") != _shard_bytes(tmp_path / "c")


def test_worker_count_does_not_change_the_records_and_workers_keep_tf_out_of_main(
    tmp_path, vocab_file, corpus_file
):
    _create(tmp_path, vocab_file, corpus_file, name="one", num_shards=2, num_workers=1)
    # Two workers, from a fresh process: only the workers may import TensorFlow.
    code = (
        "import sys\n"
        "from bert_jax.data import create_data\n"
        f"options = create_data.CreateDataOptions(vocab_file={vocab_file!r}, max_seq_length=32, dupe_factor=3,\n"
        "    input_format='sentences', block_size=4, num_shards=2, num_workers=2)\n"
        f"create_data.create_pretraining_data(options, {corpus_file!r}, {str(tmp_path / 'two')!r})\n"
        "assert 'tensorflow' not in sys.modules, 'the main process imported TensorFlow'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert _shard_bytes(tmp_path / "one") == _shard_bytes(tmp_path / "two")


def test_blocks_are_tokenized_without_building_the_tensorflow_graph(vocab_file, corpus_file):
    # Python-side encoding runs `tokenizers` directly: no graph to build or trace per block size.
    processor = create_data.BlockProcessor(_options(vocab_file))
    blocks = list(create_data.iter_blocks(corpus.iter_raw_documents(corpus_file, "sentences"), 5, 10**6))
    assert len({len(b) for b in blocks}) > 1
    for block in blocks:
        processor(block)
    assert "_graph_parts" not in vars(processor.tokenizer)


def test_a_document_makes_the_same_instances_whatever_else_is_in_the_corpus(tmp_path, vocab_file, corpus_file):
    # Blocks are the unit: the records of block 0 do not depend on later blocks.
    with open(corpus_file, encoding="utf-8") as f:
        lines = f.read().split("\n\n")
    # Same file name in another directory: the same document keys.
    (tmp_path / "part").mkdir()
    first_block = tmp_path / "part" / os.path.basename(corpus_file)
    first_block.write_text("\n\n".join(lines[:4]), encoding="utf-8")
    _create(tmp_path, vocab_file, corpus_file, name="all", num_shards=3)
    _create(tmp_path, vocab_file, str(first_block), name="part-out", num_shards=3)
    assert _shard_bytes(tmp_path / "part-out")[0] == _shard_bytes(tmp_path / "all")[0]


# ---- atomic output ----


def test_no_temporary_files_are_left(tmp_path, vocab_file, corpus_file):
    _create(tmp_path, vocab_file, corpus_file, num_shards=2)
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == ["metadata.json", "part-00000-of-00002.tfrecord", "part-00001-of-00002.tfrecord"]


def test_a_crash_leaves_no_complete_looking_shard(tmp_path, vocab_file, corpus_file, monkeypatch):
    _create(tmp_path, vocab_file, corpus_file, num_shards=2)  # an earlier, complete run
    calls = []
    original = create_data.BlockProcessor.__call__

    def crash_on_second_block(self, block):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return original(self, block)

    monkeypatch.setattr(create_data.BlockProcessor, "__call__", crash_on_second_block)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _create(tmp_path, vocab_file, corpus_file, num_shards=2, overwrite=True)
    names = os.listdir(tmp_path / "out")
    # The old metadata is gone, so the old shards no longer pass for a dataset, and no temp file remains.
    assert "metadata.json" not in names
    assert not [n for n in names if records.TEMP_MARK in n]
    with pytest.raises(DataError, match="no metadata.json"):
        records.read_metadata(str(tmp_path / "out"))


def test_an_unfinished_shard_has_only_a_temporary_name(tmp_path):
    writer = records.ShardWriter(str(tmp_path / "shard.tfrecord"))
    writer.write(b"record")
    assert not (tmp_path / "shard.tfrecord").exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith("shard.tfrecord" + records.TEMP_MARK)]
    writer.abort()
    assert os.listdir(tmp_path) == []


# ---- metadata ----


def test_metadata_records_vocab_settings_and_counts(nsp_data, vocab_file):
    metadata, parsed = nsp_data
    with open(vocab_file, "rb") as f:
        assert metadata["vocab"] == {
            "file": os.path.abspath(vocab_file),
            "sha256": hashlib.sha256(f.read()).hexdigest(),
            "size": len(VOCAB),
            "do_lower_case": True,
        }
    settings = metadata["settings"]
    assert (settings["max_seq_length"], settings["dupe_factor"], settings["mode"]) == (32, 6, "nsp")
    assert settings["num_shards"] == 2 and settings["block_size"] == 4
    counts = metadata["counts"]
    assert (counts["documents"], counts["sentences"]) == (DOCS, DOCS * SENTENCES)
    assert counts["instances"] == len(parsed["input_ids"]) == sum(s["instances"] for s in metadata["shards"])
    assert counts["next_sentence_label_1"] == int(parsed["next_sentence_labels"].sum())
    assert sum(counts["instance_lengths"].values()) == counts["instances"]
    assert metadata["features"]["input_ids"] == {"dtype": "int64", "length": 32}
    assert metadata["features"]["masked_lm_weights"] == {"dtype": "float32", "length": 20}


def test_check_metadata_names_the_mismatched_key(nsp_data, tmp_path):
    summary, _ = nsp_data
    metadata = dict(summary, path="/data/metadata.json")
    records.check_metadata(metadata, max_seq_length=32, vocab_size=len(VOCAB), vocab_sha256=summary["vocab"]["sha256"])
    with pytest.raises(DataError, match=r"/data/metadata.json: settings.max_seq_length is 32 but 128"):
        records.check_metadata(metadata, max_seq_length=128)
    with pytest.raises(DataError, match="vocab.sha256"):
        records.check_metadata(metadata, vocab_sha256="0" * 64)


def test_read_metadata_accepts_a_directory_a_shard_or_a_glob(nsp_data, tmp_path, vocab_file, corpus_file):
    _create(tmp_path, vocab_file, corpus_file, num_shards=2)
    directory = tmp_path / "out"
    for form in (str(directory), str(directory / "part-00000-of-00002.tfrecord"), str(directory / "part-*")):
        assert records.read_metadata(form)["path"] == str(directory / "metadata.json")


# ---- output names ----


def test_shard_paths_forms(tmp_path):
    assert create_data.shard_paths(str(tmp_path / "d"), 2) == [
        str(tmp_path / "d" / "part-00000-of-00002.tfrecord"),
        str(tmp_path / "d" / "part-00001-of-00002.tfrecord"),
    ]
    assert create_data.shard_paths(f"{tmp_path}/x.tfrecord@2", 7) == [
        f"{tmp_path}/x.tfrecord-00000-of-00002",
        f"{tmp_path}/x.tfrecord-00001-of-00002",
    ]
    assert create_data.shard_paths(f"{tmp_path}/one.tfrecord", 1) == [f"{tmp_path}/one.tfrecord"]
    with pytest.raises(ConfigError, match="one directory"):
        create_data.shard_paths(f"{tmp_path}/a/x.tfrecord,{tmp_path}/b/y.tfrecord", 1)


# ---- bad input ----


def test_one_sentence_documents_are_counted_and_still_used(tmp_path, vocab_file):
    path = tmp_path / "c.txt"
    path.write_text("d0s0 d0s0 d0s0\n\nd1s0 d1s0\nd1s1 d1s1\n", encoding="utf-8")
    summary, parsed = _create(tmp_path, vocab_file, str(path), dupe_factor=1, short_seq_prob=0.0)
    assert summary["counts"]["skipped"]["one_sentence_documents"] == 1
    firsts = {_origin(int(_unmasked(parsed, r)[1]))[0] for r in range(len(parsed["input_ids"]))}
    assert 0 in firsts


def test_empty_files_and_documents_are_counted(tmp_path, vocab_file):
    (tmp_path / "a.txt").write_text("", encoding="utf-8")
    (tmp_path / "b.txt").write_text("d0s0 d0s0\nd0s1 d0s1\n\n\n\nd1s0 d1s0\nd1s1\n", encoding="utf-8")
    summary, _ = _create(tmp_path, vocab_file, str(tmp_path / "*.txt"), dupe_factor=1)
    assert summary["counts"]["skipped"]["empty_files"] == 1
    assert summary["counts"]["documents"] == 2


def test_non_utf8_bytes_are_replaced_and_counted(tmp_path, vocab_file):
    path = tmp_path / "c.txt"
    path.write_bytes("d0s0 d0s0\nd0s1 \xff\n\nd1s0\nd1s1\n".encode("latin-1"))
    summary, _ = _create(tmp_path, vocab_file, str(path), dupe_factor=1)
    assert summary["counts"]["skipped"]["non_utf8_lines"] == 1


def test_a_glob_matching_nothing_fails_before_writing(tmp_path, vocab_file):
    with pytest.raises(DataError, match="matches no file"):
        _create(tmp_path, vocab_file, str(tmp_path / "missing-*.txt"))
    assert os.listdir(tmp_path / "out") == []


def test_a_vocab_without_special_tokens_is_refused(tmp_path, corpus_file):
    bad = tmp_path / "vocab.txt"
    bad.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"lacks the special token\(s\) \[PAD\]"):
        _create(tmp_path, str(bad), corpus_file)


def test_a_bad_vocab_with_workers_is_the_same_one_line_error_before_any_output(tmp_path, corpus_file):
    bad = tmp_path / "vocab.txt"
    bad.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"vocab .*vocab.txt: lacks the special token\(s\) \[PAD\]"):
        _create(tmp_path, str(bad), corpus_file, num_workers=2)
    assert not (tmp_path / "out").exists()


def test_a_corpus_without_instances_is_an_error(tmp_path, vocab_file):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="gave no instance"):
        _create(tmp_path, vocab_file, str(tmp_path / "empty.txt"))
    assert not [n for n in os.listdir(tmp_path / "out") if n.endswith(".tfrecord")]


def test_bad_settings_are_config_errors(vocab_file):
    for overrides, message in [
        ({"mode": "xlnet"}, "mode 'xlnet'"),
        ({"masking": "dynamic"}, "masking 'dynamic'"),
        ({"max_seq_length": 4}, "max_seq_length 4"),
        ({"masked_lm_prob": 1.5}, "masked_lm_prob 1.5"),
        ({"vocab_file": ""}, "vocab_file is required"),
    ]:
        with pytest.raises(ConfigError, match=message):
            _options(vocab_file, **overrides).validate()


@pytest.mark.parametrize(
    "low, high, seq",
    [(0, 9000, 16), (0, 2, 8), (0, 300_000, 128), (-5, 2**40, 200)],
    ids=["2-byte-ids", "1-byte", "3-byte-ids-long-lists", "negative-and-huge"],
)
def test_batch_serializer_writes_the_same_bytes_as_protobuf(low, high, seq):
    rng = np.random.default_rng(0)
    n = 20
    batch = {
        "input_ids": rng.integers(low, high, (n, seq)),
        "input_mask": rng.integers(0, 2, (n, seq)),
        "segment_ids": rng.integers(0, 2, (n, seq)),
        "masked_lm_positions": rng.integers(0, seq, (n, 3)),
        "masked_lm_ids": rng.integers(low, high, (n, 3)),
        "masked_lm_weights": rng.random((n, 3)).astype(np.float32),
        "next_sentence_labels": rng.integers(0, 2, (n, 1)),
    }
    fast = records.ExampleSerializer(records.feature_lengths(seq, 3, "static")).serialize(batch)
    encoder = records.ExampleEncoder("static")
    names = ["input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids"]
    one_by_one = [
        encoder.encode([batch[k][i].tolist() for k in names], batch["masked_lm_weights"][i].tolist(),
                       int(batch["next_sentence_labels"][i, 0]))
        for i in range(n)
    ]
    assert fast == one_by_one
