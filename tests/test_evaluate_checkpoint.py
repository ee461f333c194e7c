"""`bert-jax evaluate --checkpoint=HF_FOLDER`: a RoBERTa Hugging Face folder
(byte-level BPE tokenizer files inside) evaluated on held-out shards, its MLM
loss equal to transformers' own on the same batches."""

import shutil

import ml_collections
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from train_utils import write_sentence_corpus  # noqa: E402

from bert_jax.config import pretrain_config  # noqa: E402
from bert_jax.data import create_data, records, vocab  # noqa: E402
from bert_jax.errors import ConfigError  # noqa: E402
from bert_jax.tokenization import load_tokenizer  # noqa: E402
from bert_jax.train import evaluate  # noqa: E402

SEQ, P, BATCH = 32, 5, 8  # 8: the simulated devices split the batch


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """(HF folder, shards dir, parsed records) of a random tiny RobertaForMaskedLM."""
    root = tmp_path_factory.mktemp("eval-roberta")
    corpus = write_sentence_corpus(root / "books.txt", repeats=6)
    folder = vocab.build_byte_bpe_vocab(str(corpus), 400, str(root / "vocab"))
    options = create_data.CreateDataOptions(
        vocab_file=f"{folder}/vocab.json", do_lower_case=False, max_seq_length=SEQ, max_predictions_per_seq=P,
        mode="mlm_packed", dupe_factor=1, num_workers=1, num_shards=1, progress=False,
    )
    create_data.create_pretraining_data(options, str(corpus), str(root / "shards"))
    tok = load_tokenizer(folder)
    torch.manual_seed(0)
    hf_cfg = transformers.RobertaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=SEQ + 2, pad_token_id=1, type_vocab_size=1,
    )
    model = transformers.RobertaForMaskedLM(hf_cfg).eval()
    hf = root / "hf"
    model.save_pretrained(hf)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(f"{folder}/{name}", hf / name)
    metadata = records.read_metadata(str(root / "shards"))
    rows = [r for path in metadata["shard_paths"] for r in records.iter_records(path)]
    parsed = records.parse_records(rows, metadata["features"])
    return str(hf), str(root / "shards"), parsed, model


def _config(shards: str) -> ml_collections.ConfigDict:
    config = pretrain_config()
    config.data.eval_files = shards
    config.data.mode = "mlm_packed"
    config.data.max_seq_length, config.data.max_predictions_per_seq = SEQ, P
    config.batch_size, config.eval_steps = BATCH, 2
    return config


def _batches(parsed):
    keys = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
    out = []
    for start in (0, BATCH):
        batch = {k: np.asarray(parsed[k][start : start + BATCH]) for k in keys}
        batch["next_sentence_labels"] = np.zeros(BATCH, np.int32)
        out.append(batch)
    return out


def test_mlm_loss_of_a_roberta_folder_equals_transformers(roberta):
    hf, shards, parsed, model = roberta
    batches = _batches(parsed)
    result = evaluate.evaluate_checkpoint(_config(shards), hf, source_factory=lambda *a: iter(batches))
    ce_sum = weight_sum = 0.0
    for b in batches:
        with torch.no_grad():
            logits = model(
                input_ids=torch.tensor(b["input_ids"], dtype=torch.long),
                attention_mask=torch.tensor(b["input_mask"], dtype=torch.long),
            ).logits.numpy()
        at = np.take_along_axis(logits, b["masked_lm_positions"][..., None].astype(np.int64), axis=1)
        logp = at - np.log(np.exp(at - at.max(-1, keepdims=True)).sum(-1, keepdims=True)) - at.max(-1, keepdims=True)
        ce = -np.take_along_axis(logp, b["masked_lm_ids"][..., None].astype(np.int64), axis=-1)[..., 0]
        ce_sum += float((ce * b["masked_lm_weights"]).sum())
        weight_sum += float(b["masked_lm_weights"].sum())
    assert result["batches"] == 2 and result["masked_tokens"] == weight_sum
    np.testing.assert_allclose(result["mlm_loss"], ce_sum / weight_sum, rtol=1e-5)
    assert "nsp_accuracy" not in result  # RobertaForMaskedLM has no pair head


def test_the_folder_reads_its_own_shards_through_the_pipeline(roberta):
    hf, shards, _, _ = roberta
    result = evaluate.evaluate_checkpoint(_config(shards), hf)
    assert result["batches"] == 2 and np.isfinite(result["mlm_loss"]) and result["masked_tokens"] > 0


def test_checkpoint_without_eval_files_is_refused(roberta):
    hf, _, _, _ = roberta
    config = _config("")
    with pytest.raises(ConfigError, match="--checkpoint needs --config.data.eval_files"):
        evaluate.evaluate_checkpoint(config, hf)
