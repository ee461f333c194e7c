"""The RoBERTa recipe's data path with a byte-level BPE vocabulary: build-vocab
-> create-data (full-sentence packing, unmasked) -> the pre-training input
pipeline with dynamic masking, which must take the tokenizer's special ids and
the hash create-data recorded (vocab.json + merges.txt), not vocab.txt lines."""

import ml_collections
import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tokenizers")

from train_utils import write_sentence_corpus  # noqa: E402

from bert_jax.config import family_config  # noqa: E402
from bert_jax.data import create_data, vocab  # noqa: E402
from bert_jax.tokenization import load_tokenizer  # noqa: E402
from bert_jax.train import inputs  # noqa: E402


@pytest.fixture(scope="module")
def roberta_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("roberta-recipe")
    corpus = write_sentence_corpus(root / "books.txt", repeats=10)
    folder = vocab.build_byte_bpe_vocab(str(corpus), 400, str(root / "vocab"))
    vocab_json = f"{folder}/vocab.json"
    options = create_data.CreateDataOptions(
        vocab_file=vocab_json, do_lower_case=False, max_seq_length=32, max_predictions_per_seq=5,
        mode="mlm_packed", masking="none", dupe_factor=1, num_workers=1, num_shards=1, progress=False,
    )
    create_data.create_pretraining_data(options, str(corpus), str(root / "shards"))
    return vocab_json, str(root / "shards")


def test_dynamic_masking_of_byte_bpe_shards_uses_robertas_special_ids(roberta_shards):
    vocab_json, shards = roberta_shards
    tokenizer = load_tokenizer(vocab_json)
    data_cfg = ml_collections.ConfigDict(family_config("roberta", "tiny").data.to_dict())
    data_cfg.max_predictions_per_seq = 5
    data_cfg.shuffle_buffer = 1
    make = inputs.pipeline_factory(data_cfg, seed=0, vocab_file=vocab_json)
    spec = inputs.SourceSpec(global_batch=4, row_start=0, row_stop=4, seq_len=32, max_predictions=5)
    batch = next(make(spec, "train", ",".join(inputs.shard_files(shards)), None))
    ids, mask, weights = batch["input_ids"], batch["input_mask"], batch["masked_lm_weights"]
    assert (ids[:, 0] == tokenizer.cls_id).all() and tokenizer.cls_id == 0  # <s>
    assert (ids == tokenizer.mask_id).any() and tokenizer.mask_id == tokenizer.vocab_size - 1  # <mask>
    predicted = batch["masked_lm_ids"][weights > 0]
    specials = [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id]
    assert predicted.size and not np.isin(predicted, specials).any()
    assert ((ids == tokenizer.sep_id) & (mask == 1)).any()  # </s> between packed sentences
