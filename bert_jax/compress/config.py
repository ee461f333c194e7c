"""The compression jobs' configs: distillation (fine-tuning's fields plus
teacher/student ones), pruning and quantisation.

`get_config("prune")` / `get_config("quantize")` are what `bert-jax prune` and
`bert-jax quantize` load when no `--config=FILE` is given (the flag's default
is this file with the job's name); configs/compress/*.py start from them.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

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


def prune_config(**overrides) -> ml_collections.ConfigDict:
    """Every field `bert-jax prune` reads; `overrides` set fields (tests)."""
    c = ml_collections.ConfigDict()
    c.method = "heads"  # heads (structured) or magnitude (unstructured)
    c.sparsity = config_dict.placeholder(float)  # required: fraction in [0, 1) of heads or of weights
    c.steps = 0  # fine-tuning steps (0: one-shot); heads: recovery; magnitude: on the cubic schedule
    c.importance_steps = 8  # heads: training batches that score head importance
    c.data_dir = ""  # GLUE folder; "": the workdir's config.json data_dir
    c.max_seq_length = config_dict.placeholder(int)  # None: the workdir's config.json, else 128
    c.batch_size = 32  # importance and recovery fine-tuning
    c.learning_rate = 2e-5  # with steps > 0
    c.throughput_runs = 7  # timed batches for examples_per_s (median)
    c.update(overrides)
    return c


def quantize_config(**overrides) -> ml_collections.ConfigDict:
    """Every field `bert-jax quantize` reads; `overrides` set fields (tests)."""
    c = ml_collections.ConfigDict()
    c.scheme = "int8"  # int8 (weights and activations) or int8_weights (activations float)
    c.calibration_steps = 16  # training batches (of batch_size) that calibrate int8 activations
    c.data_dir = ""  # GLUE folder; "": the workdir's config.json data_dir
    c.max_seq_length = config_dict.placeholder(int)  # None: the workdir's config.json, else 128
    c.batch_size = 32  # calibration batch size
    c.throughput_runs = 7  # timed batches for examples_per_s (median)
    # int8 only; None: the Recipe's defaults. act_calibration: Qwix's calibration
    # of the activation scales (absmax, "absmax,0.9", minmax, "rms,4", ...);
    # act_scope: "tensor" or "token"; float_inputs: module-path regexes whose
    # inputs stay float (kernels int8), e.g. ("bert/encoder/layer_\\d+/output",).
    c.act_calibration = config_dict.placeholder(str)
    c.act_scope = config_dict.placeholder(str)
    c.float_inputs = config_dict.placeholder(tuple)
    c.update(overrides)
    return c


def get_config(job: str = "prune") -> ml_collections.ConfigDict:
    """The default config of `job` (prune, quantize, distill), for `--config=this_file:JOB`."""
    jobs = {"prune": prune_config, "quantize": quantize_config, "distill": distill_config}
    return jobs[job]()
