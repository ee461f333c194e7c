"""`bert-jax quantize`: post-training int8 of a fine-tuned or distilled model.

  bert-jax quantize --workdir=FINETUNE_OR_DISTILL_WORKDIR --output=DIR \
      [--config.scheme=int8|int8_weights] [--config.calibration_steps=N] [--config.data_dir=GLUE_DIR] \
      [--config.act_calibration=absmax] [--config.act_scope=tensor|token] [--config.float_inputs="('REGEX',)"]
  bert-jax quantize --config=configs/compress/quantize.py --workdir=W --output=DIR   # a config file

DIR holds the quantised checkpoint (docs/compression.md) and results.json
{"float": {...}, "quantized": {...}}: dev metrics, bytes, examples_per_s.
Every field: `bert_jax.compress.config.quantize_config`.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from bert_jax.commands import common

config_flags.DEFINE_config_file("config", *common.compress_config_flag("quantize"), lock_config=True)
common.define_model_to_folder_flags()
flags.adopt_module_key_flags(common)  # --help lists them as this command's own
FLAGS = flags.FLAGS


def main(argv):
    common.check_model_to_folder(argv)
    # Imported here, not at the top: `--help` needs no Qwix, and without it this
    # is one line naming the compress extra.
    quantize = common.quantize_module()
    common.print_results(quantize.run(FLAGS.config, FLAGS.workdir, FLAGS.output, FLAGS.overwrite))
