"""BERT-tiny (L2/H128) pre-training, BERT's recipe: AdamW, linear warmup and decay."""

from bert_jax.config import pretrain_config


def get_config():
    return pretrain_config("tiny")
