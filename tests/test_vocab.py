"""build-vocab: WordPiece vocab.txt, SentencePiece models (ALBERT's layout) and
byte-level BPE (RoBERTa's vocab.json + merges.txt) from a corpus spec; the
latter two give the ids of transformers' AlbertTokenizer / RobertaTokenizerFast."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from bert_jax.data import vocab
from bert_jax.errors import ConfigError, DataError
from bert_jax.tokenization import SPECIAL_TOKENS, WordPieceTokenizer, load_tokenizer

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "qu", "fa"]


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory):
    """~3000 sentences over 400 made-up words, some capitalized and accented."""
    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(SYLLABLES, size=rng.integers(1, 4))) for _ in range(400)]
    words += ["Élan", "Café", "Zürich"]
    lines = []
    for _ in range(3000):
        sentence = " ".join(rng.choice(words, size=rng.integers(4, 12)))
        lines.append(sentence[0].upper() + sentence[1:] + ".")
    path = tmp_path_factory.mktemp("vocab-corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_wordpiece_vocab_has_the_exact_size_and_special_tokens_first(tmp_path, corpus_file):
    path = vocab.build_wordpiece_vocab(corpus_file, 300, True, str(tmp_path / "vocab.txt"))
    tokens = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert path == str(tmp_path / "vocab.txt")
    assert len(tokens) == 300 and len(set(tokens)) == 300
    assert tokens[:5] == list(SPECIAL_TOKENS)
    assert any(t.startswith("##") for t in tokens)


def test_wordpiece_vocab_covers_its_corpus(tmp_path, corpus_file):
    vocab.build_wordpiece_vocab(corpus_file, 300, True, str(tmp_path / "vocab.txt"))
    tokenizer = WordPieceTokenizer(str(tmp_path / "vocab.txt"), lower_case=True)
    with open(corpus_file, encoding="utf-8") as f:
        ids = [i for row in tokenizer.encode(f.read().split("\n")[:500]) for i in row]
    assert ids and tokenizer.unk_id not in ids


def test_uncased_vocab_has_no_capitals_or_accents_and_cased_keeps_them(tmp_path, corpus_file):
    vocab.build_wordpiece_vocab(corpus_file, 300, True, str(tmp_path / "uncased.txt"))
    vocab.build_wordpiece_vocab(corpus_file, 300, False, str(tmp_path / "cased.txt"))
    uncased = set((tmp_path / "uncased.txt").read_text(encoding="utf-8").split("\n")) - set(SPECIAL_TOKENS)
    cased = set((tmp_path / "cased.txt").read_text(encoding="utf-8").split("\n")) - set(SPECIAL_TOKENS)
    assert not any(c.isupper() or c in "éü" for t in uncased for c in t)
    assert any(c.isupper() for t in cased for c in t)


def test_a_small_corpus_is_filled_up_with_unused_slots(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("tiny tiny corpus corpus here here.\n", encoding="utf-8")
    vocab.build_wordpiece_vocab(str(small), 200, True, str(tmp_path / "vocab.txt"))
    tokens = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(tokens) == 200 and tokens[-1].startswith("[unused")
    WordPieceTokenizer(str(tmp_path / "vocab.txt"))  # loadable: specials present, no duplicates


def test_bad_vocab_requests(tmp_path, corpus_file):
    with pytest.raises(ConfigError, match="vocab_size 50 is too small"):
        vocab.build_wordpiece_vocab(corpus_file, 50, True, str(tmp_path / "v.txt"))
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no text"):
        vocab.build_wordpiece_vocab(str(tmp_path / "empty.txt"), 200, True, str(tmp_path / "v.txt"))
    with pytest.raises(DataError, match="matches no file"):
        vocab.build_wordpiece_vocab(str(tmp_path / "none-*.txt"), 200, True, str(tmp_path / "v.txt"))
    with pytest.raises(ConfigError, match="sp_model_type 'word'"):
        vocab.build_sentencepiece_model(corpus_file, 200, "word", str(tmp_path / "sp"))


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_sentencepiece_model_layout(tmp_path, corpus_file, model_type):
    import sentencepiece as spm

    path = vocab.build_sentencepiece_model(corpus_file, 200, model_type, str(tmp_path / "sp"))
    model = spm.SentencePieceProcessor(model_file=path)
    assert model.get_piece_size() == 200
    # ALBERT's spiece.model layout: <pad> <unk> [CLS] [SEP] [MASK] at ids 0-4.
    assert [model.id_to_piece(i) for i in range(5)] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert all(model.is_control(model.piece_to_id(t)) for t in ("[CLS]", "[SEP]", "[MASK]"))
    assert model.encode("kalo mi") and (tmp_path / "sp.vocab").exists()


def _is_utf8(line: str) -> bool:
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory, corpus_file):
    """300 lines: made-up sentences and mixed-script lines (accents, CJK, emoji, controls)."""
    from test_tokenization import _mixed_lines

    with open(corpus_file, encoding="utf-8") as f:
        plain = f.read().split("\n")[:150]
    lines = [line for line in _mixed_lines() if "\n" not in line and _is_utf8(line)][:150] + plain
    path = tmp_path_factory.mktemp("mixed") / "mixed.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path), lines


@pytest.fixture(scope="session")
def albert_spm(tmp_path_factory, mixed_corpus):
    folder = tmp_path_factory.mktemp("albert-spm")
    return vocab.build_sentencepiece_model(mixed_corpus[0], 400, "bpe", str(folder / "spiece"), lower_case=True)


def test_uncased_sentencepiece_loads_as_albert_with_albert_tokenizers_ids(albert_spm, mixed_corpus):
    transformers = pytest.importorskip("transformers")
    ours = load_tokenizer(albert_spm)
    assert (ours.flavor, ours.lower_case) == ("albert", True)
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 1, 2, 3, 4)
    # AlbertTokenizer reads "[MASK]" spelled in text as the token; ours does not (docs/family.md).
    lines = [line for line in mixed_corpus[1] if not any(s in line for s in ("[MASK]", "[CLS]", "[SEP]"))]
    assert len(lines) > 250
    reference = transformers.AlbertTokenizer(vocab_file=albert_spm)
    expected = reference(lines, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert ours.encode(lines) == expected


def test_uncased_sentencepiece_learns_from_albert_normalized_text(albert_spm):
    import sentencepiece as spm

    pieces = {spm.SentencePieceProcessor(model_file=albert_spm).id_to_piece(i) for i in range(400)}
    assert not any(c.isupper() or c in "éü" for p in pieces - {"<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"} for c in p)


@pytest.fixture(scope="session")
def byte_bpe(tmp_path_factory, mixed_corpus):
    folder = tmp_path_factory.mktemp("bytebpe") / "roberta"
    return vocab.build_byte_bpe_vocab(mixed_corpus[0], 600, str(folder))


def test_byte_bpe_has_robertas_special_ids(byte_bpe):
    ids = json.loads(pathlib.Path(byte_bpe, "vocab.json").read_text(encoding="utf-8"))
    assert len(ids) == 600 and sorted(ids.values()) == list(range(600))
    assert [ids[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert ids["<mask>"] == 599
    assert pathlib.Path(byte_bpe, "merges.txt").is_file()


def test_byte_bpe_ids_equal_roberta_tokenizer_fast(byte_bpe, mixed_corpus):
    transformers = pytest.importorskip("transformers")
    ours = load_tokenizer(byte_bpe)
    files = [str(pathlib.Path(byte_bpe, n)) for n in ("vocab.json", "merges.txt")]
    reference = transformers.RobertaTokenizerFast(*files)
    lines = mixed_corpus[1]
    expected = reference(lines, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert (ours.kind, ours.vocab_size) == ("byte_bpe", len(reference))
    assert ours.encode(lines) == expected
    assert (ours.pad_id, ours.mask_id) == (reference.pad_token_id, reference.mask_token_id)
    assert max(len(row) for row in expected) > 10  # merges were learned: not one id per byte
    assert sum(map(len, expected)) < sum(len(line.encode("utf-8")) for line in lines) / 2


def test_byte_bpe_too_small_or_empty(tmp_path, corpus_file):
    with pytest.raises(ConfigError, match="vocab_size 100 is too small for byte-level BPE; use at least 261 \\(256 bytes \\+ 5 special tokens\\)"):
        vocab.build_byte_bpe_vocab(corpus_file, 100, str(tmp_path / "b"))
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no text"):
        vocab.build_byte_bpe_vocab(str(tmp_path / "empty.txt"), 400, str(tmp_path / "b"))
    assert not (tmp_path / "b" / "vocab.json").exists()


def _build_vocab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "build-vocab", *args], capture_output=True, text=True, timeout=300
    )


def test_build_vocab_command(tmp_path, corpus_file):
    out = tmp_path / "cli-vocab.txt"
    result = _build_vocab(f"--input={corpus_file}", f"--output={out}", "--vocab_size=250")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith(str(out))
    assert len(out.read_text(encoding="utf-8").split("\n")) - 1 == 250


def test_build_vocab_command_byte_bpe(tmp_path, corpus_file):
    out = tmp_path / "roberta"
    result = _build_vocab(f"--input={corpus_file}", f"--output={out}", "--vocab_size=300", "--model=bytebpe")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith(str(out))
    assert load_tokenizer(str(out)).vocab_size == 300


def test_build_vocab_command_refuses_lower_case_byte_bpe(tmp_path, corpus_file):
    result = _build_vocab(
        f"--input={corpus_file}", f"--output={tmp_path / 'b'}", "--vocab_size=300", "--model=bytebpe", "--lower_case"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "bert-jax build-vocab: error: --model=bytebpe is cased (RoBERTa's byte-level BPE); drop --lower_case"
    )
