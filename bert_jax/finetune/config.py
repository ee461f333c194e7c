"""Every field a fine-tuning run reads (ml_collections), with the defaults of
the original BERT's run_classifier.py / run_squad.py where they have one.

`configs/finetune/{glue,squad,ner}.py` start from `finetune_config()` and set
the task family's fields; command-line overrides do the rest.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from bert_jax.config import pretrain_config


def finetune_config(task: str = "sst2") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = task
    c.mode = "train"  # train | predict
    c.data_dir = ""  # GLUE: the folder holding SST-2/, MNLI/, ...; NER: the CoNLL files' folder
    c.data_source = "tsv"  # GLUE only: tsv | tfds (TensorFlow Datasets glue/*, prepared under data_dir)
    c.init_checkpoint = ""  # ours, a pre-training workdir, an HF folder or a Google TF checkpoint
    # "pretrained": start from init_checkpoint's weights. "random": only its
    # architecture and tokenizer, the weights freshly initialised (as
    # pre-training starts): the baseline that shows what pre-training bought.
    c.init = "pretrained"
    c.vocab_file = ""  # default: the checkpoint's own vocab.txt
    c.lower_case = config_dict.placeholder(bool)  # None: the checkpoint's setting, else True
    c.max_seq_length = 128
    # Each batch cut to the smallest of these lengths that holds its longest
    # example (bert_jax/finetune/buckets.py). None: automatic, (16, 32, 48, 64,
    # 128, 256, ...) below max_seq_length, then max_seq_length; (): off, every
    # batch max_seq_length wide. SQuAD (span) tasks always run padded.
    c.length_buckets = config_dict.placeholder(tuple)
    # Sequence heads (classification, regression): several short examples a
    # row, attention block-diagonal by example (bert_jax/finetune/packing.py);
    # the same logits as one example a row, far less work on padding.
    c.packing = True
    c.batch_size = 32
    c.eval_batch_size = 64
    c.total_steps = 0  # > 0 overrides num_epochs
    c.num_epochs = 3.0
    c.learning_rate = 2e-5
    c.warmup = 0.1  # fraction of total steps with linear warmup
    c.train_examples = 0  # > 0: train on the first N examples only
    c.eval_every_steps = 0  # 0: evaluate once, at the end
    c.log_every_steps = 50
    c.seed = 0
    c.seeds = config_dict.placeholder(tuple)  # several seeds: results.json reports mean/std
    c.keep_best = True  # keep WORKDIR/best/ (the best dev checkpoint, with its head)
    # Exact resume: the train state, data position and best-so-far parameters
    # go to WORKDIR/checkpoints/<step> every N steps (0: only at the end and
    # on SIGTERM/SIGINT); a rerun in the same workdir continues from there.
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 1
    c.on_nan = "stop"  # or "skip": go on after a step with a non-finite loss (its update is never applied)
    c.tensorboard = True  # WORKDIR/tb/ beside WORKDIR/metrics.jsonl
    c.dtype = "float32"  # compute dtype (bfloat16 on accelerators)
    # The sequence classifier's pooling, "cls" or "mean" (ModernBERT's
    # classifier_pooling); None: the checkpoint's (model.pooling).
    c.pooling = config_dict.placeholder(str)
    c.predict_file = ""  # mode=predict: a test file of the task
    c.predict_output = ""  # default: WORKDIR/predictions.{tsv,json,txt}

    base = pretrain_config("tiny")
    c.optimizer = base.optimizer
    c.optimizer.weight_decay = 0.01
    # One learning rate and one warmup: `learning_rate` and `warmup` above (a
    # fraction of the steps, since the step count depends on the data). The
    # pre-training block's own pair is removed, so overriding it is an unknown
    # key, not a value another field silently overwrites.
    with c.optimizer.unlocked():
        del c.optimizer["learning_rate"]
        del c.optimizer["warmup_steps"]
    c.mesh = base.mesh
    return c
