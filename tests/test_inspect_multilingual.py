"""inspect-data on a multilingual corpus: words, [UNK] words and tokens per
word per Unicode script, for each tokenizer kind, on three lines whose
numbers are counted by hand below."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from bert_jax.data import inspect
from bert_jax.tokenization import load_tokenizer

CORPUS = "the cats .\nкот кошка\nγάτα 猫\n"  # Latin, Cyrillic, Greek, CJK; one sentence a line


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("multilingual") / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def wordpiece(tmp_path_factory):
    """An uncased vocab: `cats` = cat ##s, `кот` = к ##от; `кошка` cannot be
    covered (no ##о...), so it is one [UNK]; Greek and 猫 are [UNK]."""
    path = tmp_path_factory.mktemp("wordpiece") / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", ".", "к", "##от"]))
    return str(path)


@pytest.fixture(scope="session")
def sentencepiece(tmp_path_factory):
    """A character model knowing only t h e c a s . к о т: a word alone is ▁
    then one piece per known character, a run of unknown ones one <unk>."""
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["the cats .", "кот"] * 5),
        model_writer=model,
        model_type="char",
        vocab_size=100,
        hard_vocab_limit=False,
        character_coverage=1.0,
        minloglevel=2,
    )
    path = tmp_path_factory.mktemp("sentencepiece") / "char.model"
    path.write_bytes(model.getvalue())
    return str(path)


@pytest.fixture(scope="session")
def byte_bpe(tmp_path_factory):
    """All 256 byte symbols and the merges making Ġthe and Ġcat: a word alone
    (after a space) is Ġ + its UTF-8 bytes, unless merged; never [UNK]."""
    tokenizers = pytest.importorskip("tokenizers")
    folder = tmp_path_factory.mktemp("bytebpe")
    merges = ["Ġ t", "Ġt h", "Ġth e", "Ġ c", "Ġc a", "Ġca t"]
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tokens += ["".join(m.split()) for m in merges]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return str(folder)


def _report(corpus, vocab):
    tokenizer = load_tokenizer(vocab)
    return inspect.inspect_corpus(corpus, tokenizer, do_lower_case=tokenizer.lower_case, input_format="sentences")


def _row(words, unk_words, tokens):
    return {
        "words": words,
        "unk_words": unk_words,
        "rate": unk_words / words,
        "tokens": tokens,
        "tokens_per_word": tokens / words,
    }


def test_wordpiece_per_script(corpus, wordpiece):
    unk = _report(corpus, wordpiece)["unk"]
    assert unk["by_script"] == {
        "LATIN": _row(2, 0, 3),  # the | cat ##s
        "CYRILLIC": _row(2, 1, 3),  # к ##от | [UNK]
        "PUNCTUATION": _row(1, 0, 1),
        "GREEK": _row(1, 1, 1),  # γάτα -> γατα (uncased) -> [UNK]
        "CJK": _row(1, 1, 1),
    }
    assert (unk["tokens"], unk["unk_tokens"]) == (9, 3)


def test_sentencepiece_per_script(corpus, sentencepiece):
    report = _report(corpus, sentencepiece)
    assert report["unk"]["by_script"] == {
        "LATIN": _row(2, 0, 9),  # ▁ t h e | ▁ c a t s
        "CYRILLIC": _row(2, 1, 10),  # ▁ к о т | ▁ к о <unk>(ш) к <unk>(Cyrillic а)
        "PUNCTUATION": _row(1, 0, 2),  # ▁ .
        "GREEK": _row(1, 1, 2),  # ▁ <unk>
        "CJK": _row(1, 1, 2),  # ▁ <unk>
    }
    # Whole lines: 11 + 10 + 4 pieces, of which 2 + 1 + 1 <unk>.
    assert (report["unk"]["tokens"], report["unk"]["unk_tokens"]) == (25, 4)
    assert sum(report["histograms"]["sentence_tokens"]["counts"]) == 3


def test_byte_bpe_per_script(corpus, byte_bpe):
    report = _report(corpus, byte_bpe)
    assert report["unk"]["by_script"] == {
        "LATIN": _row(2, 0, 3),  # Ġthe | Ġcat s
        "CYRILLIC": _row(2, 0, 18),  # Ġ + 6 bytes | Ġ + 10 bytes
        "PUNCTUATION": _row(1, 0, 2),  # Ġ .
        "GREEK": _row(1, 0, 9),  # Ġ + 8 bytes
        "CJK": _row(1, 0, 4),  # Ġ + 3 bytes
    }
    # Whole lines: t h e Ġcat s Ġ . (7), 6 + Ġ + 10 (17), 8 + Ġ + 3 (12).
    assert (report["unk"]["tokens"], report["unk"]["unk_tokens"]) == (36, 0)


def test_scripts_with_many_unk_words_are_named_in_a_warning(corpus, wordpiece, byte_bpe):
    [warning] = [w for w in _report(corpus, wordpiece)["warnings"] if w.startswith("scripts with")]
    assert "CYRILLIC 50.00% of 2 words, GREEK 100.00% of 1 words, CJK 100.00% of 1 words" in warning
    assert not [w for w in _report(corpus, byte_bpe)["warnings"] if w.startswith("scripts with")]


def test_the_table_shows_a_row_per_script(corpus, wordpiece):
    text = inspect.format_report(_report(corpus, wordpiece))
    assert "    script             words [UNK] words [UNK] rate tokens/word" in text
    assert "    CYRILLIC               2           1     50.00%        1.50" in text


def test_command_takes_any_vocabulary_kind(corpus, byte_bpe):
    result = subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "inspect-data", f"--input={corpus}", f"--vocab_file={byte_bpe}",
         "--input_format=sentences", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["vocab"]["do_lower_case"] is False  # byte-level BPE keeps case
    assert report["unk"]["by_script"]["CYRILLIC"]["tokens_per_word"] == 9.0
