"""A toy SST-2 folder, vocab and fine-tuned classifier workdir, for the
compression tests (test fixtures, not part of the package)."""

from __future__ import annotations

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bert_jax.finetune import trainer
from bert_jax.model import BertForSequenceClassification, ModelConfig
from bert_jax.tokenization import SPECIAL_TOKENS

POSITIVE = ("good", "great", "fun", "lovely")
NEGATIVE = ("bad", "awful", "boring", "dull")
FILLER = ("the", "a", "movie", "film", "is", "was", "very", "plot", "and", "actors")


def write_vocab(path: pathlib.Path) -> pathlib.Path:
    """Special tokens, the toy words and a few letters (so any word pieces)."""
    words = list(POSITIVE + NEGATIVE + FILLER) + [".", "!", ","]
    letters = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in words] + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tokens = list(SPECIAL_TOKENS) + words + letters
    path.write_text("\n".join(tokens) + "\n")
    return path


def sentences(n: int, seed: int) -> list[tuple[str, int]]:
    """`n` (sentence, label) pairs: label 1 iff the sentiment word is positive."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(2))
        word = rng.choice(POSITIVE if label else NEGATIVE)
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 6)))) + [word]
        rng.shuffle(words)
        rows.append((" ".join(words) + " .", label))
    return rows


def write_sst2(glue_dir: pathlib.Path, n_train: int = 64, n_dev: int = 24) -> pathlib.Path:
    """`glue_dir/SST-2/{train,dev}.tsv` in the GLUE layout."""
    folder = glue_dir / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 0), ("dev", n_dev, 1)):
        lines = ["sentence\tlabel"] + [f"{s}\t{y}" for s, y in sentences(n, seed)]
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    return glue_dir


def tiny_config(vocab_size: int, num_layers: int = 2, hidden_size: int = 32, num_heads: int = 4) -> ModelConfig:
    return ModelConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                       intermediate_size=2 * hidden_size, max_position_embeddings=64, num_labels=2)


def init_params(cfg: ModelConfig, seed: int = 0) -> dict:
    model = BertForSequenceClassification(cfg)
    ids = jnp.zeros((1, 8), jnp.int32)
    params = nn.meta.unbox(model.init(jax.random.PRNGKey(seed), ids, jnp.ones_like(ids), ids))["params"]
    return jax.tree.map(np.asarray, params)


def write_finetuned_workdir(workdir: pathlib.Path, cfg: ModelConfig, params: dict, vocab: pathlib.Path,
                            data_dir: pathlib.Path, max_seq_length: int = 16, task: str = "sst2") -> pathlib.Path:
    """What `bert-jax finetune` leaves: WORKDIR/best/ (with head.json) and config.json."""
    from bert_jax.tokenization import WordPieceTokenizer

    workdir.mkdir(parents=True, exist_ok=True)
    head = {"task": task, "head": "classification", "labels": ["0", "1"]}
    trainer.save_best(workdir / trainer.BEST_DIR, cfg, params, head, WordPieceTokenizer(str(vocab)))
    config = {"task": task, "data_dir": str(data_dir), "max_seq_length": max_seq_length}
    (workdir / "config.json").write_text(json.dumps(config))
    return workdir


def write_teacher(root: pathlib.Path, n_train: int, n_dev: int, num_layers: int = 2):
    """(vocab, GLUE folder, config, fine-tuned workdir) of a toy SST-2 teacher
    under `root`: what the compression and resume tests start from."""
    vocab = write_vocab(root / "vocab.txt")
    glue = write_sst2(root / "glue", n_train=n_train, n_dev=n_dev)
    cfg = tiny_config(len(vocab.read_text().split()), num_layers=num_layers)
    return vocab, glue, cfg, write_finetuned_workdir(root / "teacher", cfg, init_params(cfg), vocab, glue)
