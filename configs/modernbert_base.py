"""ModernBERT-base pre-training (bert_jax.config.family_config; docs/family.md).

The published recipe (Warner et al. 2024, arXiv:2412.13663; AnswerDotAI/ModernBERT
yamls/modernbert/modernbert-base-pretrain.yaml): MLM only, 30% dynamic masking
on packed rows; AdamW (b2 0.98, weight decay 1e-5) at 8e-4 on a
warmup-stable-decay schedule (3B-token warmup, 1-sqrt decay at the end);
phase 1: 1,024 tokens, RoPE base 10,000 in every layer (1.72T tokens);
phase 2, context extension: 8,192 tokens, the global layers' RoPE base 160,000
(300B tokens). Steps and fractions: bert_jax.config.MODERNBERT_RECIPES.
"""

from bert_jax.config import family_config


def get_config():
    return family_config("modernbert", "base")
