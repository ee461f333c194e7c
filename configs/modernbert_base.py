"""ModernBERT-base pre-training (bert_jax.config.family_config; docs/family.md)."""

from bert_jax.config import family_config


def get_config():
    return family_config("modernbert", "base")
