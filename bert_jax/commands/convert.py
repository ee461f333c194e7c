"""`bert-jax convert`: import Hugging Face / Google TF checkpoints, export to Hugging Face.

bert-jax convert --from=hf --input=HF_FOLDER --output=MODEL_DIR
bert-jax convert --from=tf --input=uncased_L-12_H-768_A-12/bert_model.ckpt --output=MODEL_DIR
bert-jax convert --to=hf --input=MODEL_DIR_OR_WORKDIR [--step=N] --output=HF_FOLDER
"""

from __future__ import annotations

import json

from absl import flags

from bert_jax import convert
from bert_jax.commands import common
from bert_jax.errors import UserError

flags.DEFINE_enum(
    "from", None, ["hf", "tf"], "Import: a Hugging Face folder (hf) or Google TF checkpoint (tf)."
)
flags.DEFINE_enum(
    "to", None, ["hf"], "Export: write a Hugging Face folder (model.safetensors + config.json)."
)
flags.DEFINE_string(
    "input", None, "Checkpoint to read (for --to=hf: our model dir, a workdir or a step dir)."
)
flags.DEFINE_string("output", None, "Directory to write; must not exist unless --overwrite.")
flags.DEFINE_integer(
    "step", None, "With --to=hf and a training workdir: the step to export (default latest)."
)
flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
FLAGS = flags.FLAGS


def main(argv):
    common.no_positional_args(argv)
    source, target = FLAGS["from"].value, FLAGS.to
    if (source is None) == (target is None):
        raise UserError("pass exactly one of --from=hf|tf (import) or --to=hf (export)")
    common.require_flags("input", "output")
    if source is not None:
        summary = convert.import_checkpoint(source, FLAGS.input, FLAGS.output, overwrite=FLAGS.overwrite)
    else:
        summary = convert.export_checkpoint(
            FLAGS.input, FLAGS.output, step=FLAGS.step, overwrite=FLAGS.overwrite
        )
    print(json.dumps(summary, indent=2))
