"""CoNLL-2003 NER fine-tuning: --config.data_dir holds the CoNLL-format
files (word ... tag per line, BIO/IOB2 tags), named by train_file/dev_file."""

from bert_jax.finetune.config import finetune_config


def get_config():
    c = finetune_config("ner")
    c.train_file = "train.txt"
    c.dev_file = "dev.txt"
    c.learning_rate = 5e-5
    c.num_epochs = 3.0
    return c
