"""Fine-tuning inputs follow the tokenizer's family: RoBERTa's `<s> a </s></s> b </s>`."""

import ml_collections
import pytest

from bert_jax.data import vocab
from bert_jax.errors import ConfigError
from bert_jax.finetune import glue, trainer
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


def test_trainer_reads_any_tokenizer_kind_for_glue_and_refuses_it_for_squad(roberta_folder):
    config = ml_collections.ConfigDict({"task": "sst2", "vocab_file": roberta_folder, "lower_case": None})
    assert trainer.load_tokenizer(config, {}, "ckpt").flavor == "roberta"
    config.task = "squad"
    with pytest.raises(ConfigError, match="task='squad' needs a WordPiece vocab.txt"):
        trainer.load_tokenizer(config, {}, "ckpt")
