"""`bert-jax quantize --config=configs/compress/quantize.py --workdir=W --output=DIR`:
the defaults of bert_jax.compress.config.quantize_config; copy and edit, or
override on the command line (`--config.scheme=int8_weights`)."""

from bert_jax.compress.config import quantize_config


def get_config():
    return quantize_config(scheme="int8")
