"""bert-jax: BERT pre-training, fine-tuning and compression in JAX/Flax."""

__version__ = "0.1.0"
