"""`bert-jax prune --config=configs/compress/prune.py --workdir=W --output=DIR`:
the defaults of bert_jax.compress.config.prune_config; copy and edit, or
override on the command line (`--config.method=magnitude --config.sparsity=0.7`)."""

from bert_jax.compress.config import prune_config


def get_config():
    return prune_config(method="heads", sparsity=0.25)
