"""`bert-jax finetune`: fine-tune and evaluate on GLUE / SQuAD / NER, or predict.

  bert-jax finetune --config=configs/finetune/glue.py --config.task=sst2 \
      --config.data_dir=../shared/data/glue --config.init_checkpoint=MODEL_OR_HF_FOLDER --workdir=WORKDIR
  bert-jax finetune --config=configs/finetune/glue.py --config.task=sst2 --config.mode=predict \
      --config.predict_file=GLUE/SST-2/test.tsv --workdir=WORKDIR
"""

from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from bert_jax.commands import common
from bert_jax.finetune import trainer

config_flags.DEFINE_config_file("config", None, "A configs/finetune/*.py file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Where results.json, best/ and predictions go.")
FLAGS = flags.FLAGS


def main(argv):
    common.no_positional_args(argv)
    common.require_flags("config", example="--config=configs/finetune/glue.py")
    common.require_flags("workdir")
    # Predict mode also reads `bert-jax quantize`'s output (a layer above the trainer);
    # Qwix (the compress extra) is imported only for such a checkpoint.
    out = trainer.run(FLAGS.config, FLAGS.workdir, restorers=(common.restore_quantized_for_predict,))
    print(json.dumps(out, indent=2, sort_keys=True) if isinstance(out, dict) else f"wrote {out}")
