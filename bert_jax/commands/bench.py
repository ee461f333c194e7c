"""`bert-jax bench`: time the pre-training step; one JSON line on stdout.

bert-jax bench --config=configs/bert_base.py --batch_size=8 --seq_len=128 --steps=20
    [--dtype=bfloat16] [--max_predictions=20] [--compare [--rounds=5]] [--config.x=y]

`--compare` also times Hugging Face FlaxBertForPreTraining trained as its
run_mlm_flax example trains it (needs transformers), interleaved with ours.
"""

from __future__ import annotations

import json
import pathlib

from absl import flags
from ml_collections import config_flags

from bert_jax import bench
from bert_jax.commands import common

config_flags.DEFINE_config_file("config", None, "Pre-training config file (configs/*.py).")
flags.DEFINE_integer("batch_size", None, "Global examples per step (default: the config's batch_size).")
flags.DEFINE_integer("seq_len", None, "Tokens per sequence (default: the config's data.max_seq_length).")
flags.DEFINE_integer("steps", 20, "Timed steps per implementation, after compilation and warm-up.")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16", "float16"], "Compute dtype (default: model.dtype).")
flags.DEFINE_integer(
    "max_predictions", 0, "Masked positions per sequence (default: 20 at 128, 80 at 512, else 15%)."
)
flags.DEFINE_bool("compare", False, "Also time the Hugging Face Flax reference, interleaved.")
flags.DEFINE_integer("rounds", 0, "Interleaved rounds the steps are split into (default 5 with --compare).")
flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
FLAGS = flags.FLAGS


def main(argv):
    common.no_positional_args(argv)
    common.require_flags("config", example="--config=configs/bert_base.py")
    config = FLAGS.config
    config_name = pathlib.Path(config_flags.get_config_filename(FLAGS["config"])).stem
    record = bench.run_bench(
        config,
        batch_size=FLAGS.batch_size or config.batch_size,
        seq_len=FLAGS.seq_len or config.data.max_seq_length,
        steps=FLAGS.steps,
        dtype=FLAGS.dtype or "",
        max_predictions=FLAGS.max_predictions,
        compare=FLAGS.compare,
        rounds=FLAGS.rounds,
        warmup=FLAGS.warmup,
        config_name=config_name,
    )
    print(json.dumps(record), flush=True)
