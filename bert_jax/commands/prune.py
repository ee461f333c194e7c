"""`bert-jax prune`: prune a fine-tuned or distilled classifier.

  bert-jax prune --workdir=W --method=heads --sparsity=0.25 [--steps=200] --output=DIR
  bert-jax prune --workdir=W --method=magnitude --sparsity=0.7 --steps=300 --output=DIR

`heads` removes that fraction of attention heads by importance (Michel et
al. 2019) and shrinks the matrices, then fine-tunes the small model --steps
steps (recovery); `magnitude` zeroes that fraction of each encoder matrix,
one-shot or over --steps of fine-tuning on a cubic schedule.
DIR/results.json: {"dense": {...}, "pruned": {...}}.
"""

from __future__ import annotations

import json

from absl import flags

from bert_jax.compress import prune
from bert_jax.errors import UserError

flags.DEFINE_string("workdir", None, "A fine-tuning/distillation workdir, or a checkpoint with its classifier.")
flags.DEFINE_string("method", "heads", "heads (structured) or magnitude (unstructured).")
flags.DEFINE_float("sparsity", None, "Fraction in [0, 1): of heads (heads) or of weights (magnitude).")
flags.DEFINE_string("output", None, "Directory to write; must not exist unless --overwrite.")
flags.DEFINE_integer("steps", 0, "Fine-tuning steps (0: one-shot); magnitude: on the pruning schedule; heads: "
                     "recovery of the pruned model.")
flags.DEFINE_integer("importance_steps", 8, "heads: training batches to score head importance on.")
flags.DEFINE_string("data_dir", None, "GLUE folder (default: the workdir's config.json data_dir).")
flags.DEFINE_integer("max_seq_length", None, "Default: the workdir's config.json, else 128.")
flags.DEFINE_integer("batch_size", 32, "Batch size for importance and recovery fine-tuning.")
flags.DEFINE_float("learning_rate", 2e-5, "With --steps: the fine-tuning learning rate.")
flags.DEFINE_integer("throughput_runs", 7, "Timed batches for examples_per_s (median).")
flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; all options are --flags")
    if not FLAGS.workdir or not FLAGS.output or FLAGS.sparsity is None:
        raise UserError("--workdir, --sparsity and --output are all required")
    results = prune.run(FLAGS.workdir, FLAGS.method, FLAGS.sparsity, FLAGS.output, FLAGS.steps, FLAGS.data_dir,
                        FLAGS.max_seq_length, FLAGS.batch_size, FLAGS.learning_rate, FLAGS.importance_steps,
                        FLAGS.throughput_runs, FLAGS.overwrite)
    print(json.dumps(results, indent=2, sort_keys=True))
