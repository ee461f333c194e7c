"""inspect-data: corpus and shard preflight reports, and corrupt shards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from bert_jax.data import create_data, inspect, records
from bert_jax.errors import DataError
from bert_jax.tokenization import WordPieceTokenizer

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "cat", "sat", "on", "mat", "dog", "ran", "."]


def _vocab(path, tokens):
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    uncased = _vocab(root / "uncased.txt", SPECIAL + WORDS)
    cased = _vocab(root / "cased.txt", SPECIAL + WORDS + ["The", "Cat", "Dog", "Mat"])
    text = root / "corpus.txt"
    # 3 documents, 7 sentences: 22 Latin words, 7 full stops, 2 Cyrillic words (not in the vocab).
    text.write_text(
        "the cat sat on the mat.\nthe dog ran.\n\n"
        "the dog sat on the cat.\nкот ran.\n\n"
        "the mat ran.\nthe cat sat.\nсобака.\n",
        encoding="utf-8",
    )
    options = create_data.CreateDataOptions(
        vocab_file=uncased, max_seq_length=16, dupe_factor=20, input_format="sentences", num_shards=2
    )
    created = root / "created"
    create_data.create_pretraining_data(options, str(text), str(created))
    return {"uncased": uncased, "cased": cased, "corpus": str(text), "created": str(created)}


def _corpus_report(files, vocab="uncased", lower=True, model=None):
    tokenizer = WordPieceTokenizer(files[vocab], lower_case=lower)
    return inspect.inspect_corpus(
        files["corpus"], tokenizer, do_lower_case=lower, model_vocab_size=model, input_format="sentences"
    )


def test_corpus_counts_and_unk_rate_per_script(files):
    report = _corpus_report(files)
    assert (report["counts"]["documents"], report["counts"]["sentences"]) == (3, 7)
    by_script = report["unk"]["by_script"]
    assert by_script["CYRILLIC"] == {"words": 2, "unk_words": 2, "rate": 1.0, "tokens": 2, "tokens_per_word": 1.0}
    assert by_script["LATIN"]["unk_words"] == 0 and by_script["LATIN"]["words"] == 22
    assert by_script["PUNCTUATION"] == {"words": 7, "unk_words": 0, "rate": 0.0, "tokens": 7, "tokens_per_word": 1.0}
    assert report["unk"]["tokens"] == 31 and report["unk"]["unk_tokens"] == 2
    assert report["unk"]["rate"] == pytest.approx(2 / 31)
    assert any("[UNK] rate" in w for w in report["warnings"])
    assert sum(report["histograms"]["sentence_tokens"]["counts"]) == 7
    assert report["problems"] == []


def test_vocab_size_against_the_model_is_flagged(files):
    assert _corpus_report(files, model=len(SPECIAL + WORDS))["problems"] == []
    problems = _corpus_report(files, model=30522)["problems"]
    assert len(problems) == 1 and problems[0].startswith("VOCAB SIZE MISMATCH")
    assert "13 tokens" in problems[0] and "30522" in problems[0]


def test_case_mismatch_between_vocab_and_lowercasing(files):
    cased_lowered = _corpus_report(files, vocab="cased", lower=True)
    assert any("cased vocab" in w for w in cased_lowered["warnings"])
    uncased_kept = _corpus_report(files, vocab="uncased", lower=False)
    assert any("uncased vocab but do_lower_case=False" in p for p in uncased_kept["problems"])


def test_shard_report_matches_the_metadata(files):
    tokenizer = WordPieceTokenizer(files["uncased"])
    report = inspect.inspect_shards(files["created"], tokenizer, model_vocab_size=13)
    metadata = records.read_metadata(files["created"])
    assert report["problems"] == []
    assert report["counts"]["instances"] == metadata["counts"]["instances"]
    assert list(report["counts"]["shards"].values()) == [s["instances"] for s in metadata["shards"]]
    assert report["counts"]["next_sentence_label_1"] == metadata["counts"]["next_sentence_label_1"]
    assert sum(report["histograms"]["instance_length"]["counts"]) == metadata["counts"]["instances"]
    assert report["counts"]["max_token_id"] < 13


def test_shards_from_another_vocab_are_a_problem(files):
    report = inspect.inspect_shards(files["created"], WordPieceTokenizer(files["cased"]), model_vocab_size=17)
    assert any(p.startswith("VOCAB MISMATCH") for p in report["problems"])
    assert any(p.startswith("VOCAB SIZE MISMATCH") for p in report["problems"])
    assert "!! PROBLEM: VOCAB MISMATCH" in inspect.format_report(report)


def _copy_shard(files, tmp_path) -> str:
    source = records.read_metadata(files["created"])["shard_paths"][0]
    target = tmp_path / "bad.tfrecord"
    shutil.copy(source, target)
    return str(target)


def test_a_corrupt_record_names_the_file_and_record(files, tmp_path):
    path = _copy_shard(files, tmp_path)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    record_bytes = len(data) // records.read_metadata(files["created"])["shards"][0]["instances"]
    data[record_bytes * 2 + record_bytes // 2] ^= 0xFF  # inside the third record's payload
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(DataError, match=r"bad.tfrecord: record 2 is unreadable") as info:
        inspect.inspect_shards(path)
    assert "corrupt or truncated" in str(info.value)


def test_a_truncated_shard_is_reported(files, tmp_path):
    path = _copy_shard(files, tmp_path)
    os.truncate(path, os.path.getsize(path) - 7)
    with pytest.raises(DataError, match=r"bad.tfrecord: record \d+ is unreadable"):
        inspect.inspect_shards(path)


def test_created_data_report_is_the_same_kind_of_summary(files):
    metadata = records.read_metadata(files["created"])
    report = inspect.created_data_report(metadata)
    assert report["counts"]["instances"] == metadata["counts"]["instances"]
    assert sum(report["histograms"]["instance_length"]["counts"]) == metadata["counts"]["instances"]
    text = inspect.format_report(report)
    assert "instances: " in text and "[UNK]:" in text


def test_inspect_data_command_exits_1_on_a_problem(files):
    result = subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "inspect-data", f"--shards={files['created']}",
         f"--vocab_file={files['uncased']}", "--vocab_size_of_model=30522", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["kind"] == "shards" and report["problems"][0].startswith("VOCAB SIZE MISMATCH")
