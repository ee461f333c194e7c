"""GLUE fine-tuning (run_classifier.py's defaults): pick the task with
--config.task=cola|sst2|mrpc|stsb|qqp|mnli|qnli|rte|wnli and point
--config.data_dir at the GLUE folder (holding SST-2/train.tsv, ...)."""

from bert_jax.finetune.config import finetune_config


def get_config():
    return finetune_config("sst2")
