"""XNLI fine-tuning (the multilingual BERT README's settings: batch 32,
lr 5e-5, 2 epochs, seq 128): train on English MultiNLI, evaluate on the 15
XNLI languages. --config.data_dir holds xnli.dev.tsv / xnli.test.tsv and
multinli/multinli.train.<lang>.tsv (flat, or as released under XNLI-1.0/
and XNLI-MT-1.0/); --config.data_source=tfds reads TFDS xnli + multi_nli."""

from bert_jax.finetune.config import finetune_config


def get_config():
    c = finetune_config("xnli")
    c.train_language = "en"  # XNLI-MT's multinli.train.<lang>.tsv, when train_file is empty
    c.train_file = ""  # or a train TSV (XNLI-MT or GLUE MNLI layout), relative to data_dir unless absolute
    c.languages = ""  # comma-separated subset of the 15 to evaluate; "" = all 15
    c.eval_test = False  # also score xnli.test.tsv (results: test_accuracy, test_accuracy_<lang>)
    c.learning_rate = 5e-5
    c.num_epochs = 2.0
    return c
