"""BERT-base (L12/H768) pre-training, BERT's recipe: AdamW, linear warmup and decay."""

from bert_jax.config import pretrain_config


def get_config():
    return pretrain_config("base")
