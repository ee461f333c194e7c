"""`bert-jax quantize`: post-training int8 of a fine-tuned or distilled model.

  bert-jax quantize --workdir=FINETUNE_OR_DISTILL_WORKDIR --scheme=int8|int8_weights \
      --output=DIR [--calibration_steps=N] [--data_dir=GLUE_DIR] \
      [--act_calibration=absmax] [--act_scope=tensor|token] [--float_inputs=REGEX,...]

DIR holds the quantised checkpoint (docs/compression.md) and results.json
{"float": {...}, "quantized": {...}}: dev metrics, bytes, examples_per_s.
"""

from __future__ import annotations

import json

from absl import flags

from bert_jax.compress import extras
from bert_jax.errors import UserError

flags.DEFINE_string("workdir", None, "A fine-tuning/distillation workdir, or a checkpoint with its classifier.")
flags.DEFINE_string("scheme", "int8", "int8 (weights and activations) or int8_weights (activations float).")
flags.DEFINE_string("output", None, "Directory to write; must not exist unless --overwrite.")
flags.DEFINE_integer("calibration_steps", 16, "Training batches (of --batch_size) that calibrate int8 activations.")
flags.DEFINE_string("data_dir", None, "GLUE folder (default: the workdir's config.json data_dir).")
flags.DEFINE_integer("max_seq_length", None, "Default: the workdir's config.json, else 128.")
flags.DEFINE_integer("batch_size", 32, "Calibration batch size.")
flags.DEFINE_integer("throughput_runs", 7, "Timed batches for examples_per_s (median).")
flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
flags.DEFINE_string("act_calibration", None, "int8: Qwix calibration of the activation scales "
                    "(absmax, absmax,0.9, minmax, rms,4, ...; default absmax).")
flags.DEFINE_enum("act_scope", None, ["tensor", "token"], "int8: statistic of each calibration batch over "
                  "the whole input tensor (default) or per token, averaged (Qwix's default).")
flags.DEFINE_list("float_inputs", None, "int8: module-path regexes whose inputs stay float "
                  r"(kernels int8), e.g. 'bert/encoder/layer_\d+/output'.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    if not FLAGS.workdir or not FLAGS.output:
        raise UserError("--workdir and --output are both required")
    # Imported here, not at the top: `--help` needs no Qwix, and without it this
    # is one line naming the compress extra.
    quantize = extras.quantize_module()
    results = quantize.run(FLAGS.workdir, FLAGS.scheme, FLAGS.output, FLAGS.calibration_steps, FLAGS.data_dir,
                           FLAGS.max_seq_length, FLAGS.batch_size, FLAGS.throughput_runs, FLAGS.overwrite,
                           FLAGS.act_calibration, FLAGS.act_scope, FLAGS.float_inputs)
    print(json.dumps(results, indent=2, sort_keys=True))
