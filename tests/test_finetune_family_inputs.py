"""Fine-tuning inputs follow the tokenizer's family: RoBERTa's `<s> a </s></s> b </s>`,
and word-aligned tasks (SQuAD, NER) give each word the pieces running text has."""

import ml_collections
import numpy as np
import pytest

from bert_jax.data import vocab
from bert_jax.finetune import glue, ner, squad, trainer
from bert_jax.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def roberta_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("roberta")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"the film number {i} was good and not bad at all" for i in range(200)), encoding="utf-8")
    return vocab.build_byte_bpe_vocab(str(corpus), 300, str(root / "vocab"))


def test_glue_pairs_with_a_roberta_tokenizer_get_the_double_separator(roberta_folder):
    tok = load_tokenizer(roberta_folder)
    feats = glue.encode([glue.GlueExample("g", "the film", "was good", "1")], tok, 16)
    a, b = tok.encode(["the film", "was good"])
    want = [tok.cls_id, *a, tok.sep_id, tok.sep_id, *b, tok.sep_id]
    assert feats["input_ids"][0, : len(want)].tolist() == want
    assert feats["input_ids"][0, len(want):].tolist() == [tok.pad_id] * (16 - len(want))
    assert feats["segment_ids"][0].tolist() == [0] * 16
    assert feats["input_mask"][0].sum() == len(want)


def test_trainer_reads_any_tokenizer_kind_for_every_task(roberta_folder):
    config = ml_collections.ConfigDict({"task": "sst2", "vocab_file": roberta_folder, "lower_case": None})
    for task in ("sst2", "squad", "squad2", "ner"):
        config.task = task
        assert trainer.load_tokenizer(config, {}, "ckpt").flavor == "roberta"


def test_byte_level_words_keep_the_space_before_them_as_in_running_text(roberta_folder):
    tok = load_tokenizer(roberta_folder)
    assert tok.space_starts_word
    words = ["the", "film", "number", "7", "was", "not", "bad"]
    assert sum(tok.tokenize_words(words), []) == tok.tokenize([" ".join(words)])[0]
    # A word after a space starts with the byte-level space mark; alone it does not.
    assert tok.tokenize_words(["film", "film"]) == [tok.tokenize(["film"])[0], tok.tokenize([" film"])[0]]
    assert tok.tokenize_words(["film"], after_space=[True]) == [tok.tokenize([" film"])[0]]


CONTEXT = "the film number 12 was good and the film number 13 was bad at all"


def _squad_example(answer="number 13"):
    words, char_to_word = squad.split_words(CONTEXT)
    start = CONTEXT.index(answer)
    ex = squad.SquadExample("q", "was the film bad", words, [answer], answer,
                            char_to_word[start], char_to_word[start + len(answer) - 1])
    return ex


def test_squad_window_with_a_roberta_tokenizer_is_its_pair_encoding(roberta_folder):
    """`<s> question </s></s> context </s>`, one segment, the context's ids those of
    the whole text, and the answer's positions on its pieces."""
    tok = load_tokenizer(roberta_folder)
    (w,) = squad.make_windows([_squad_example()], tok, 64, 16, 16, is_training=True)
    q, c = tok.encode(["was the film bad", CONTEXT])
    want = [tok.cls_id, *q, tok.sep_id, tok.sep_id, *c, tok.sep_id]
    assert w.input_ids[: len(want)].tolist() == want
    assert w.input_ids[len(want):].tolist() == [tok.pad_id] * (64 - len(want))
    assert w.segment_ids.tolist() == [0] * 64 and w.input_mask.sum() == len(want)
    answer = tok.encode([" number 13"])[0]
    assert w.input_ids[w.start : w.end + 1].tolist() == answer
    assert (w.token_to_word[w.start], w.token_to_word[w.end]) == (9, 10)


def test_squad_answer_inside_a_word_falls_back_to_its_pieces_without_the_space(roberta_folder):
    tok = load_tokenizer(roberta_folder)
    (w,) = squad.make_windows([_squad_example("13")], tok, 64, 16, 16, is_training=True)
    # "13" follows a space in the context, so its pieces are " 13"'s.
    assert w.input_ids[w.start : w.end + 1].tolist() == tok.encode([" 13"])[0]
    ex = _squad_example("13")
    ex.doc_words[10] = "(13)"
    (w,) = squad.make_windows([ex], tok, 64, 16, 16, is_training=True)
    pieces = tok.convert_ids_to_tokens(w.input_ids[w.start : w.end + 1])
    assert "".join(pieces) == "13" and w.token_to_word[w.start] == 10


def test_ner_with_a_roberta_tokenizer_tags_the_first_piece_of_each_word(roberta_folder):
    tok = load_tokenizer(roberta_folder)
    sentences = [ner.Sentence(["the", "film", "number", "12"], ["O", "B-X", "O", "I-X"], "f:1")] * 2
    feats = ner.encode(sentences, tok, 32, ["O", "B-X", "I-X"])
    per_word = tok.tokenize_words(sentences[0].words)
    want = [tok.cls_id, *tok.encode(["the film number 12"])[0], tok.sep_id]
    for row in range(2):  # each sentence's first word is at the start of its text
        assert feats["input_ids"][row, : len(want)].tolist() == want
    firsts = np.cumsum([1] + [len(p) for p in per_word[:-1]])
    assert np.nonzero(feats["first"][0] >= 0)[0].tolist() == firsts.tolist()
    assert feats["labels"][0, firsts].tolist() == [0, 1, 0, 2]
