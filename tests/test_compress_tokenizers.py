"""Compressed checkpoints keep the tokenizer they were made with, of any kind.

An ALBERT-tiny classifier with a SentencePiece vocabulary (trained here on
the toy SST-2 sentences) is head-pruned, magnitude-pruned and quantised;
each output folder holds the SentencePiece model, and finetune's predict mode
on it labels the dev set exactly as the job's own evaluation did (which
tokenised with the source's tokenizer). A byte-level BPE model is pruned too.
"""

import json
import pathlib

import numpy as np
import pytest
import toy_tasks

from bert_jax import checkpoints
from bert_jax.compress import prune, quantize
from bert_jax.compress.config import prune_config, quantize_config
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import trainer
from bert_jax.model import ModelConfig
from bert_jax.tokenization import ByteBPETokenizer, SentencePieceTokenizer

spm = pytest.importorskip("sentencepiece")
tokenizers = pytest.importorskip("tokenizers")

ALBERT_SPECIALS = ["[CLS]", "[SEP]", "[MASK]"]


def _toy_lines() -> list[str]:
    return [s for s, _ in toy_tasks.sentences(200, seed=5)]


def _albert_spm(folder: pathlib.Path) -> pathlib.Path:
    """A SentencePiece model with ALBERT's ids: <pad> 0, <unk> 1, [CLS] [SEP] [MASK]."""
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_toy_lines()), model_prefix=str(folder / "spiece"), vocab_size=60,
        hard_vocab_limit=False, model_type="bpe", control_symbols=ALBERT_SPECIALS, minloglevel=2,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
    )
    return folder / "spiece.model"


def _byte_bpe(folder: pathlib.Path) -> pathlib.Path:
    """vocab.json + merges.txt of a tiny byte-level BPE with RoBERTa's specials."""
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(_toy_lines(), vocab_size=300, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(folder))
    return folder / "vocab.json"


def _teacher(root: pathlib.Path, cfg: ModelConfig, tokenizer, glue_dir: pathlib.Path) -> pathlib.Path:
    """What `bert-jax finetune` leaves (WORKDIR/best with head.json, config.json), for `tokenizer`."""
    workdir = root / "teacher"
    head = {"task": "sst2", "head": "classification", "labels": ["0", "1"]}
    trainer.save_best(workdir / trainer.BEST_DIR, cfg, toy_tasks.init_params(cfg, seed=1), head, tokenizer)
    (workdir / "config.json").write_text(json.dumps({"task": "sst2", "data_dir": str(glue_dir),
                                                     "max_seq_length": 16}))
    return workdir


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    """(glue_dir, the ALBERT-tiny SentencePiece teacher's workdir)."""
    root = tmp_path_factory.mktemp("albert-spm")
    glue_dir = toy_tasks.write_sst2(root / "glue", n_train=32, n_dev=16)
    tokenizer = SentencePieceTokenizer(str(_albert_spm(root)), "albert")
    cfg = ModelConfig(family="albert", vocab_size=tokenizer.vocab_size, hidden_size=32, embedding_size=16,
                      num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=64, num_labels=2)
    return glue_dir, _teacher(root, cfg, tokenizer, glue_dir)


def _predicted_accuracy(glue_dir: pathlib.Path, checkpoint: pathlib.Path, tmp_path: pathlib.Path,
                        restorers=()) -> float:
    """Accuracy on the toy dev set of finetune's predict mode run on `checkpoint`."""
    c = ft_config.finetune_config("sst2")
    dev = glue_dir / "SST-2" / "dev.tsv"
    c.update(dict(mode="predict", init_checkpoint=str(checkpoint), data_dir=str(glue_dir), max_seq_length=16,
                  eval_batch_size=8, predict_file=str(dev), predict_output=str(tmp_path / "predictions.tsv")))
    out = trainer.run(c, tmp_path, restorers=restorers)
    predicted = [line.split("\t")[1] for line in out.read_text().splitlines()[1:]]
    gold = [line.split("\t")[1] for line in dev.read_text().splitlines()[1:]]
    return float(np.mean([p == g for p, g in zip(predicted, gold, strict=True)]))


def _saved_tokenizer(folder: pathlib.Path) -> str:
    vocab, _ = checkpoints.tokenizer_meta(folder)
    return pathlib.Path(vocab).name if vocab else ""


def test_head_pruned_albert_keeps_its_sentencepiece_model_and_predicts(albert, tmp_path):
    glue_dir, workdir = albert
    out = tmp_path / "heads"
    results = prune.run(prune_config(method="heads", sparsity=0.5, steps=0, batch_size=8, importance_steps=1, throughput_runs=1), str(workdir), str(out))
    assert _saved_tokenizer(out) == "spiece.model"
    assert not (out / checkpoints.VOCAB_FILE).exists()  # it was once the .model copied under this name
    assert _predicted_accuracy(glue_dir, out, tmp_path) == results["pruned"]["accuracy"]


def test_magnitude_pruned_albert_keeps_its_sentencepiece_model_and_predicts(albert, tmp_path):
    glue_dir, workdir = albert
    out = tmp_path / "magnitude"
    results = prune.run(prune_config(method="magnitude", sparsity=0.5, steps=0, batch_size=8, throughput_runs=1), str(workdir), str(out))
    assert _saved_tokenizer(out) == "spiece.model"
    assert _predicted_accuracy(glue_dir, out, tmp_path) == results["pruned"]["accuracy"]


def test_quantised_albert_keeps_its_sentencepiece_model_and_predicts(albert, tmp_path):
    glue_dir, workdir = albert
    out = tmp_path / "int8"
    results = quantize.run(quantize_config(scheme="int8_weights", calibration_steps=1, batch_size=8, throughput_runs=1), str(workdir), str(out))
    assert _saved_tokenizer(out) == "spiece.model"
    assert quantize.load_quantized(out)[3]["vocab_file"] == str(out / "spiece.model")
    accuracy = _predicted_accuracy(glue_dir, out, tmp_path, restorers=(quantize.restore_for_predict,))
    assert accuracy == results["quantized"]["accuracy"]


def test_head_pruned_byte_bpe_model_keeps_vocab_json_and_merges(tmp_path):
    glue_dir = toy_tasks.write_sst2(tmp_path / "glue", n_train=16, n_dev=8)
    tokenizer = ByteBPETokenizer(str(_byte_bpe(tmp_path)), str(tmp_path / "merges.txt"))
    cfg = ModelConfig(family="roberta", vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=2, num_heads=4,
                      intermediate_size=64, max_position_embeddings=64, position_offset=2, num_labels=2)
    workdir = _teacher(tmp_path, cfg, tokenizer, glue_dir)
    out = tmp_path / "heads"
    results = prune.run(prune_config(method="heads", sparsity=0.5, steps=0, batch_size=8, importance_steps=1, throughput_runs=1), str(workdir), str(out))
    assert {p.name for p in out.iterdir()} >= {"vocab.json", "merges.txt"}
    assert (out / "merges.txt").read_bytes() == (tmp_path / "merges.txt").read_bytes()
    assert _predicted_accuracy(glue_dir, out, tmp_path) == results["pruned"]["accuracy"]
