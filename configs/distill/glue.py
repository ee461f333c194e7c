"""Task distillation on GLUE (the fine-tuning config plus teacher/student fields):
--config.task=sst2 --config.teacher=FINETUNE_WORKDIR --config.student_layers=3
--config.data_dir=GLUE_DIR (see docs/compression.md)."""

from bert_jax.compress.config import distill_config


def get_config():
    return distill_config("sst2")
