"""`bert-jax extract-features`: per-token hidden states as JSON lines (the
original BERT's extract_features.py).

  bert-jax extract-features --checkpoint=MODEL_DIR_OR_HF_FOLDER --layers=-1,-2 < input.txt > out.jsonl

Each stdin line is `text` or `text_a ||| text_b`. Any family and tokenizer
kind: WordPiece, SentencePiece or byte-level BPE (bert_jax.tokenization.load_tokenizer).
"""

from __future__ import annotations

import json
import sys

from absl import flags

from bert_jax import checkpoints, features
from bert_jax.commands import common

flags.DEFINE_string(
    "checkpoint", None, "Our model dir, a training workdir, a Hugging Face folder or a Google TF checkpoint."
)
flags.DEFINE_string(
    "vocab", None,
    "Tokenizer: vocab.txt, vocab.json (+ merges.txt beside it), a SentencePiece .model or a tokenizer folder "
    "(default: the checkpoint's own tokenizer files).",
)
flags.DEFINE_bool("lower_case", None, "Lower-case input (default: the checkpoint's setting, else true).")
flags.DEFINE_string("layers", "-1,-2,-3,-4", "Comma-separated encoder layer indexes; -1 is the last layer.")
flags.DEFINE_integer(
    "max_seq_length", 128, "Tokens per input including [CLS]/[SEP]; longer inputs are truncated."
)
flags.DEFINE_integer("batch_size", 32, "Lines per jitted forward pass.")
FLAGS = flags.FLAGS


def main(argv):
    common.no_positional_args(argv, "input comes on stdin")
    common.require_flags("checkpoint")
    cfg, params, meta = checkpoints.load_model(FLAGS.checkpoint)
    tokenizer = features.load_tokenizer(FLAGS.checkpoint, meta, FLAGS.vocab, FLAGS.lower_case)
    features.check_tokenizer_fits(tokenizer, cfg, FLAGS.vocab or meta.get("vocab_file") or FLAGS.checkpoint)
    layers = features.parse_layers(FLAGS.layers, cfg.num_layers)
    extractor = features.FeatureExtractor(cfg, params, layers, FLAGS.max_seq_length, FLAGS.batch_size)
    for obj in features.extract_features(sys.stdin, tokenizer, extractor):
        sys.stdout.write(json.dumps(obj) + "\n")
