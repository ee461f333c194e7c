"""build-vocab: WordPiece vocab.txt and SentencePiece models from a corpus spec."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bert_jax.data import vocab
from bert_jax.errors import ConfigError, DataError
from bert_jax.tokenization import SPECIAL_TOKENS, WordPieceTokenizer

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
    assert [model.piece_to_id(t) for t in ("[PAD]", "[UNK]")] == [0, 1]
    assert all(model.is_control(model.piece_to_id(t)) for t in ("[CLS]", "[SEP]", "[MASK]"))
    assert model.encode("kalo mi") and (tmp_path / "sp.vocab").exists()


def test_build_vocab_command(tmp_path, corpus_file):
    out = tmp_path / "cli-vocab.txt"
    result = subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "build-vocab", f"--input={corpus_file}", f"--output={out}",
         "--vocab_size=250"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith(str(out))
    assert len(out.read_text(encoding="utf-8").split("\n")) - 1 == 250
