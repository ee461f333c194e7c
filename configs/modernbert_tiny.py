"""ModernBERT-tiny pre-training (bert_jax.config.family_config; docs/family.md): tiny sizes, for tests.

ModernBERT's recipe in small: 1,000 steps of 32 rows, 30% dynamic masking on
packed rows, warmup-stable-decay (20 warmup steps, 1-sqrt decay over the last
10%); 90% of the steps at 128 tokens with RoPE base 10,000, then context
extension to 512 tokens with the global layers' base at 160,000.
"""

from bert_jax.config import family_config


def get_config():
    return family_config("modernbert", "tiny")
