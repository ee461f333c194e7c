"""`bert-jax evaluate --workdir=DIR [--step=N] [--config.data.eval_files=...]`,
or `bert-jax evaluate --checkpoint=MODEL_FOLDER --config.data.eval_files=... [--workdir=OUT]`.

Restores a pre-training checkpoint (on any mesh: --config.mesh.* overrides
the saved one) and reports MLM loss, MLM accuracy, NSP accuracy and
perplexity on held-out data: JSON on stdout, DIR/eval_<step>.json and
TensorBoard (DIR/tb/, split "eval"). With --checkpoint, a model folder (a
Hugging Face folder of any supported family with its MLM head, or a bert-jax
model dir) is evaluated with its own tokenizer files; the config is the
defaults plus the --config.* overrides; --workdir (optional) gets eval_0.json.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags, logging
from ml_collections import config_flags

from bert_jax.commands import common
from bert_jax.config import pretrain_config
from bert_jax.errors import UserError

config_flags.DEFINE_config_dict("config", pretrain_config(), "Overrides of the workdir's config.json.")
flags.DEFINE_string("workdir", None, "A pretrain workdir.")
flags.DEFINE_integer("step", None, "The checkpoint step (default: the latest).")
flags.DEFINE_string(
    "checkpoint", None, "A model folder (Hugging Face, any supported family, or a bert-jax model dir) to evaluate."
)
FLAGS = flags.FLAGS


def _overridden(argv: list[str]) -> list[str]:
    """Dotted names given as --config.NAME=VALUE on the command line."""
    return [a[len("--config.") :].split("=", 1)[0] for a in argv if a.startswith("--config.")]


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    common.no_positional_args(argv)
    from bert_jax.train import evaluate, metrics_log

    if FLAGS.checkpoint:
        result = evaluate.evaluate_checkpoint(FLAGS.config, FLAGS.checkpoint)
        if FLAGS.workdir:
            os.makedirs(FLAGS.workdir, exist_ok=True)
            evaluate.write_result(FLAGS.workdir, result)
        print(json.dumps(result, sort_keys=True))
        return
    if not FLAGS.workdir:
        raise UserError("--workdir (a pretrain workdir) or --checkpoint (a model folder) is required")

    config = evaluate.load_workdir_config(FLAGS.workdir)
    for name in _overridden(sys.argv):
        parent, key = config, name
        *path, key = name.split(".")
        for p in path:
            parent = parent[p]
        value = FLAGS.config
        for p in name.split("."):
            value = value[p]
        parent[key] = value
    result = evaluate.evaluate_workdir(config, FLAGS.workdir, FLAGS.step)
    evaluate.write_result(FLAGS.workdir, result)
    board = metrics_log.MetricsLog(FLAGS.workdir)
    board.write_tensorboard_only(result["step"], result, split="eval")
    board.close()
    print(json.dumps(result, sort_keys=True))
