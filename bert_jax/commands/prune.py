"""`bert-jax prune`: prune a fine-tuned or distilled classifier.

  bert-jax prune --workdir=W --output=DIR --config.method=heads --config.sparsity=0.25 [--config.steps=200]
  bert-jax prune --workdir=W --output=DIR --config.method=magnitude --config.sparsity=0.7 --config.steps=300
  bert-jax prune --config=configs/compress/prune.py --workdir=W --output=DIR   # a config file, like every job

`heads` removes that fraction of attention heads by importance (Michel et
al. 2019) and shrinks the matrices, then fine-tunes the small model
`config.steps` steps (recovery); `magnitude` zeroes that fraction of each
encoder matrix, one-shot or over `config.steps` of fine-tuning on a cubic
schedule. Every field: `bert_jax.compress.config.prune_config`.
DIR/results.json: {"dense": {...}, "pruned": {...}}.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from bert_jax.commands import common
from bert_jax.compress import prune

config_flags.DEFINE_config_file("config", *common.compress_config_flag("prune"), lock_config=True)
common.define_model_to_folder_flags()
flags.adopt_module_key_flags(common)  # --help lists them as this command's own
FLAGS = flags.FLAGS


def main(argv):
    common.check_model_to_folder(argv)
    common.print_results(prune.run(FLAGS.config, FLAGS.workdir, FLAGS.output, FLAGS.overwrite))
