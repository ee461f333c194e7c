"""`bert-jax embed`: one vector per sentence, or a semantic search over a corpus.

  bert-jax embed --checkpoint=CKPT [--pooling=cls|mean|max] [--normalize] [--output=x.npy] < sentences.txt
  bert-jax embed --checkpoint=CKPT --query=TEXT --corpus=FILE [--top_k=10]

Each stdin line is one sentence; its vector is a JSON array on one stdout line,
or a row of the `[lines, hidden]` float32 --output .npy. The vector pools the
last layer's token states ([CLS] and [SEP] included): a sentence-transformers
folder's own pooling, normalisation and maximum length (modules.json,
1_Pooling/config.json, a Normalize module, sentence_bert_config.json), so the
vectors equal `SentenceTransformer(folder).encode(...)`; any other checkpoint
mean-pools, unnormalised, unless --pooling/--normalize say otherwise (the flags
also override a folder's). Longer sentences are cut to their first tokens.

With --query, the corpus lines are ranked by exact cosine similarity to the
query (every line compared, in batches): --top_k JSON lines
{"rank", "line", "score", "text"}, best first.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import flags

from bert_jax import atomic, bertscore, embeddings
from bert_jax.commands import common
from bert_jax.errors import UserError

flags.DEFINE_string("checkpoint", None, "A bert-jax model dir or workdir, or a Hugging Face / sentence-transformers folder.")
flags.DEFINE_enum("pooling", None, list(embeddings.POOLINGS),
                  "Token states -> vector (default: a sentence-transformers folder's own, else mean).")
flags.DEFINE_bool("normalize", None, "L2-normalise each vector (default: as the folder says, else no).")
flags.DEFINE_string("output", None, "Write the vectors to this .npy file instead of JSON lines on stdout.")
flags.DEFINE_string("query", None, "Rank --corpus by cosine similarity to this text.")
flags.DEFINE_string("corpus", None, "With --query: text file, one sentence per line.")
flags.DEFINE_integer("top_k", 10, "With --query: how many corpus lines to print.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Sentences per jitted forward pass.", lower_bound=1)
FLAGS = flags.FLAGS


def _pooling(meta: dict) -> embeddings.Pooling:
    """The folder's sentence-transformers pooling where it has one, with the flags on top."""
    folder = meta.get("path")
    declared = embeddings.sentence_transformers_settings(folder) if folder else None
    declared = declared or embeddings.Pooling("mean", False, None)
    mode = FLAGS.pooling or declared.mode
    normalize = declared.normalize if FLAGS.normalize is None else FLAGS.normalize
    return embeddings.Pooling(mode, normalize, declared.max_length)


def _check_output(path: str) -> pathlib.Path:
    out = pathlib.Path(path)
    if out.suffix != ".npy":
        raise UserError(f"--output={path} must end in .npy (NumPy's format, what it writes)")
    if not out.parent.is_dir():
        raise UserError(f"--output={path}: the folder {out.parent} does not exist; create it first")
    return out


def _search(encoder: embeddings.SentenceEncoder) -> None:
    if not FLAGS.corpus:
        raise UserError("--query needs --corpus=FILE: the lines to rank")
    if not FLAGS.query.strip():
        raise UserError("--query is empty; pass the text to search for")
    corpus = bertscore.check_sentences(embeddings.read_lines(FLAGS.corpus, "corpus"), f"--corpus={FLAGS.corpus}")
    query = encoder([FLAGS.query])[0]
    for rank, (score, index) in enumerate(embeddings.top_k(query, encoder.batches(corpus), FLAGS.top_k), 1):
        sys.stdout.write(json.dumps({"rank": rank, "line": index + 1, "score": score, "text": corpus[index]},
                                    ensure_ascii=False) + "\n")


def _stdin_lines() -> list[str]:
    """stdin's lines; one that is not UTF-8 is refused by its number."""
    lines = []
    for number, raw in enumerate(sys.stdin.buffer, 1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\n"))
        except UnicodeDecodeError as e:
            raise UserError(f"stdin, line {number}: not UTF-8 ({e.reason} at byte {e.start}); convert it") from None
    return lines


def main(argv):
    common.no_positional_args(argv, "sentences come on stdin")
    common.require_flags("checkpoint")
    if FLAGS.corpus and FLAGS.query is None:
        raise UserError("--corpus is only read with --query=TEXT (the text to rank it against)")
    out = _check_output(FLAGS.output) if FLAGS.output else None
    cfg, params, meta, tokenizer = embeddings.load(FLAGS.checkpoint)
    max_length = embeddings.usable_length(cfg, meta.get("path"))
    encoder = embeddings.SentenceEncoder(cfg, params, tokenizer, _pooling(meta), max_length, FLAGS.batch_size)
    if FLAGS.query is not None:
        return _search(encoder)
    sentences = bertscore.check_sentences(_stdin_lines(), "stdin")
    vectors = np.concatenate(list(encoder.batches(sentences))) if sentences else np.zeros([0, cfg.hidden_size])
    if out is not None:
        with atomic.atomic_path(out) as tmp, open(tmp, "wb") as f:  # complete or as it was
            np.save(f, vectors.astype(np.float32))
        return None
    for vector in vectors:
        sys.stdout.write(json.dumps(vector.tolist()) + "\n")
    return None
