"""ModernBERT-tiny pre-training (bert_jax.config.family_config; docs/family.md): tiny sizes, for tests."""

from bert_jax.config import family_config


def get_config():
    return family_config("modernbert", "tiny")
