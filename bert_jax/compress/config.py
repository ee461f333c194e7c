"""The distillation config: fine-tuning's fields plus teacher/student ones."""

from __future__ import annotations

import ml_collections

from bert_jax.finetune.config import finetune_config


def distill_config(task: str = "sst2") -> ml_collections.ConfigDict:
    c = finetune_config(task)
    c.teacher = ""  # a fine-tuning (or distillation) workdir, or a checkpoint with its classifier
    c.student_layers = 0  # 0: as many as the initialisation source
    # "teacher": alternate teacher layers (DistilBERT); a configs/*.py file: fresh
    # weights of that architecture; or any checkpoint (alternate layers of it).
    c.student_init = "teacher"
    c.student_hidden_size = 0  # 0: the source's width (a .py config may set another)
    c.temperature = 2.0
    c.alpha = 0.5  # weight of the soft-target loss; 1 - alpha on the hard labels
    c.hidden_weight = 0.0  # > 0: hidden-state MSE (TinyBERT), projected when widths differ
    c.attention_weight = 0.0  # > 0: attention-map KL (MiniLM); needs equal head counts
    c.layer_map = ()  # teacher layer (1-based) per student layer; () = uniform m*T//S
    c.throughput_runs = 7  # timed batches for examples_per_s (median)
    c.learning_rate = 5e-5
    return c
