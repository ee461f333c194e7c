"""`bert-jax pretrain --config=configs/X.py --workdir=DIR [--config.total_steps=N ...]`.

Trains (or resumes) in DIR: config.json, metrics.jsonl, tb/, checkpoints/.
SIGTERM / SIGINT save a checkpoint and exit 0; rerun the command to resume.
With --config.probe.every_steps=N (and probe.data_dir) a copy of the weights
is fine-tuned on a small GLUE set every N steps (bert_jax.finetune.probe).
Multi-host: auto-detected on TPU VM pod slices and under SLURM; by hand with
--coordinator_address, --num_processes and --process_id.
"""

from __future__ import annotations

import json

from absl import flags, logging
from ml_collections import config_flags

from bert_jax.commands import common
from bert_jax.errors import UserError

config_flags.DEFINE_config_file("config", None, "A pre-training config file, e.g. configs/demo.py.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and the resolved config.")
flags.DEFINE_string("coordinator_address", "", "Multi-process: host:port of process 0.")
flags.DEFINE_integer("num_processes", 0, "Multi-process: how many processes in all.")
flags.DEFINE_integer("process_id", -1, "Multi-process: this process's index (0 = coordinator).")
FLAGS = flags.FLAGS


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    common.no_positional_args(argv)
    if FLAGS.config is None or not FLAGS.workdir:
        raise UserError(
            "--config and --workdir are both required (e.g. --config=configs/demo.py --workdir=/tmp/bert-demo)"
        )
    from bert_jax.train import loop, pretraining

    hooks = []
    if FLAGS.config.probe.every_steps > 0:
        from bert_jax.finetune import probe

        # Built (and checked) now: bad probe settings fail before training, not at step N.
        hooks.append(probe.make_probe_hook(FLAGS.config, FLAGS.workdir))
    loop.distributed_init(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    final = pretraining.train(FLAGS.config, FLAGS.workdir, step_hooks=hooks)
    if final:
        print(json.dumps({"final": final}, sort_keys=True))
