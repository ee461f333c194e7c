"""SQuAD fine-tuning (run_squad.py's defaults): --config.task=squad (v1.1) or
squad2 (v2.0, with unanswerable questions), --config.train_file and
--config.dev_file the SQuAD JSON files."""

from bert_jax.finetune.config import finetune_config


def get_config():
    c = finetune_config("squad")
    c.train_file = ""
    c.dev_file = ""
    c.max_seq_length = 384
    c.doc_stride = 128
    c.max_query_length = 64
    c.max_answer_length = 30
    c.n_best_size = 20
    c.null_score_diff_threshold = 0.0  # v2.0: predict "" when null score - best span score exceeds this
    c.batch_size = 32
    c.learning_rate = 3e-5
    c.num_epochs = 2.0
    return c
