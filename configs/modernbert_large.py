"""ModernBERT-large pre-training (bert_jax.config.family_config; docs/family.md).

The recipe of configs/modernbert_base.py (Warner et al. 2024, arXiv:2412.13663)
at large's published peak rate, 5e-4, after a 2B-token warmup: 30% dynamic
masking on packed rows, warmup-stable-decay (1-sqrt decay), 1,024 tokens at
RoPE base 10,000, then context extension to 8,192 with the global layers'
base at 160,000. Steps and fractions: bert_jax.config.MODERNBERT_RECIPES.
"""

from bert_jax.config import family_config


def get_config():
    return family_config("modernbert", "large")
