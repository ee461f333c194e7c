"""Demo: a tiny BERT pre-trained on a built-in corpus in a few CPU minutes.

Needs no download: the vocab and the pre-training shards are built in the
workdir from the docstrings of the installed Python standard library (one
module per document). It is a demo of the pipeline, not a useful model.
"""

from bert_jax.config import model_section, pretrain_config


def get_config():
    c = pretrain_config("tiny")
    c.model = model_section("tiny", max_position_embeddings=128, vocab_size=4000)
    c.data.corpus = "builtin:stdlib-docs"
    c.data.eval_corpus = ""  # held out from the built-in corpus
    c.data.vocab_size = 4000
    c.data.max_seq_length = 64
    c.data.max_predictions_per_seq = 10
    c.data.dupe_factor = 2
    c.data.shuffle_buffer = 2000
    c.batch_size = 32
    c.total_steps = 600
    c.log_every_steps = 50
    c.checkpoint_every_steps = 200
    c.eval_every_steps = 200
    c.eval_steps = 10
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 60
    return c
