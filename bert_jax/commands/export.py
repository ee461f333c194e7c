"""`bert-jax export`: a TensorFlow SavedModel taking raw strings.

  bert-jax export --workdir=FINETUNE_OR_DISTILL_WORKDIR --format=saved_model --output=DIR

Signature `serving_default(text: tf.string [n]) -> {labels, label_ids,
probabilities}`, the WordPiece tokenizer inside the graph.
"""

from __future__ import annotations

from absl import flags

from bert_jax.commands import common
from bert_jax.compress import export

common.define_model_to_folder_flags()
flags.adopt_module_key_flags(common)  # --help lists them as this command's own
flags.DEFINE_string("format", "saved_model", "Export format: saved_model.")
flags.DEFINE_integer("max_seq_length", None, "Default: the workdir's config.json, else 128.")
FLAGS = flags.FLAGS


def main(argv):
    common.check_model_to_folder(argv)
    summary = export.run(FLAGS.workdir, FLAGS.output, FLAGS["format"].value, FLAGS.max_seq_length, FLAGS.overwrite)
    common.print_results(summary)
