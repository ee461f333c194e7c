"""`bert-jax export`: a TensorFlow SavedModel taking raw strings.

  bert-jax export --workdir=FINETUNE_OR_DISTILL_WORKDIR --format=saved_model --output=DIR

Signature `serving_default(text: tf.string [n]) -> {labels, label_ids,
probabilities}`, the WordPiece tokenizer inside the graph.
"""

from __future__ import annotations

import json

from absl import flags

from bert_jax.compress import export
from bert_jax.errors import UserError

flags.DEFINE_string("workdir", None, "A fine-tuning/distillation workdir, or a checkpoint with its classifier.")
flags.DEFINE_string("format", "saved_model", "Export format: saved_model.")
flags.DEFINE_string("output", None, "Directory to write; must not exist unless --overwrite.")
flags.DEFINE_integer("max_seq_length", None, "Default: the workdir's config.json, else 128.")
flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    if not FLAGS.workdir or not FLAGS.output:
        raise UserError("--workdir and --output are both required")
    summary = export.run(FLAGS.workdir, FLAGS.output, FLAGS["format"].value, FLAGS.max_seq_length, FLAGS.overwrite)
    print(json.dumps(summary, indent=2, sort_keys=True))
