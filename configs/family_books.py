"""A ModernBERT and a BERT of one size on one budget, each with its own recipe
(docs/family.md, "ModernBERT against BERT on the books"; issue 19).

    bert-jax pretrain --config=configs/family_books.py:modernbert --workdir=W \
        --config.data.vocab_file=VOCAB --config.data.train_files=TRAIN --config.data.eval_files=EVAL

(`:bert` for the BERT.) Both: 4 layers, hidden 128, 2 heads, the same
feed-forward parameter count (ModernBERT's GeGLU: 128 -> 2 x 192 -> 128;
BERT's GELU MLP: 128 -> 288 -> 128), one WordPiece vocabulary (its size from
VOCAB, [PAD] its id 0), packed rows of 128 tokens, batch 32, 1,000 steps,
held-out evaluation at BERT's 15% masking every 100 steps.

* ModernBERT: pre-LN without biases, RoPE, GeGLU, sliding-window attention
  (16 tokens) with a global layer every third, no dropout, 30% masking,
  warmup-stable-decay (20 warmup steps to 8e-4, 1-sqrt decay over the last 10%).
* BERT: post-LN with biases, learned positions, dropout 0.1, 15% masking,
  linear warmup (20 steps to 8e-4) then linear decay to 0.
"""

from bert_jax.config import family_config

SEQ, PREDICTIONS = 128, 39  # 39: room for 30% of a row


def get_config(family: str = "modernbert"):
    if family not in ("modernbert", "bert"):
        raise ValueError(f"configs/family_books.py:{family}; use :modernbert or :bert")
    c = family_config(family, "tiny")
    c.model.num_layers, c.model.hidden_size, c.model.num_heads = 4, 128, 2
    c.model.intermediate_size = 192 if family == "modernbert" else 288
    c.model.vocab_size = 8192  # VOCAB's size: set --config.model.vocab_size for another
    c.model.pad_token_id = 0
    c.model.pair_head = "none"
    c.data.mode = "packed"
    c.data.masking = "dynamic"
    c.data.do_lower_case = True
    c.data.max_seq_length, c.data.max_predictions_per_seq = SEQ, PREDICTIONS
    c.data.masked_lm_prob = 0.15  # the held-out rate, the same for both
    rate = 0.3 if family == "modernbert" else 0.15
    c.phases = [{"fraction": 1.0, "max_seq_length": SEQ, "max_predictions_per_seq": PREDICTIONS,
                 "masked_lm_prob": rate}]
    c.batch_size, c.total_steps = 32, 1000
    c.optimizer.learning_rate, c.optimizer.warmup_steps = 8e-4, 20
    if family == "bert":
        c.optimizer.schedule = "linear"
    c.log_every_steps = c.eval_every_steps = 100
    c.eval_steps = 20
    c.checkpoint_every_steps = 1000
    return c
