"""`bert-jax distill`: distil a fine-tuned teacher into a smaller student.

  bert-jax distill --config=configs/distill/glue.py --config.task=sst2 \
      --config.teacher=FINETUNE_WORKDIR --config.student_layers=3 \
      --config.data_dir=../shared/data/glue --workdir=DIR

DIR/best/ is the student (a fine-tuned checkpoint); DIR/results.json has the
teacher's and the student's dev metrics and examples_per_s.
"""

from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from bert_jax.commands import common
from bert_jax.compress import distill

config_flags.DEFINE_config_file("config", None, "configs/distill/glue.py", lock_config=True)
flags.DEFINE_string("workdir", None, "Where results.json, config.json and best/ go.")
FLAGS = flags.FLAGS


def main(argv):
    common.no_positional_args(argv)
    common.require_flags("config", example="--config=configs/distill/glue.py")
    common.require_flags("workdir")
    print(json.dumps(distill.run(FLAGS.config, FLAGS.workdir), indent=2, sort_keys=True))
