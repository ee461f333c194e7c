"""General distillation during pre-training: the teacher behind `config.distill`.

`pretrain` with `--config.distill.teacher=PATH` (a pre-training workdir or
step, a bert-jax model dir, or a Hugging Face *ForMaskedLM / *ForPreTraining
folder) trains the student on alpha * T^2 * KL(teacher_T || student_T) +
(1 - alpha) * CE at the masked positions (DistilBERT's general distillation,
Sanh et al. 2019), the pair head keeping its hard loss. The loss and the
teacher's forward pass are in `bert_jax.train.step` (`MlmDistill`); this
module loads and checks the teacher and places its parameters over the mesh
with the student's rule table.

It lives in `train/` rather than `compress/` because the loop, which builds
the step, may not import the jobs layer.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from bert_jax import checkpoints
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.model import Execution, ModelConfig, ModelSpec, execution_of
from bert_jax.train import sharding as sharding_lib
from bert_jax.train import state as state_lib
from bert_jax.train.step import MlmDistill


def check_settings(section: ml_collections.ConfigDict) -> tuple[float, float]:
    """(temperature, alpha) of `config.distill`, ConfigError if out of range."""
    temperature, alpha = float(section.temperature), float(section.alpha)
    if not temperature > 0:
        raise ConfigError(f"distill.temperature={temperature}; it must be > 0 (e.g. 2.0)")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"distill.alpha={alpha} is outside [0, 1]; it weights the soft loss, 1 - alpha the hard one")
    return temperature, alpha


def _same_file_contents(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def check_vocab(path: str, teacher_cfg: ModelConfig, student_cfg: ModelConfig, teacher_vocab: str | None,
                student_vocab: str | None) -> None:
    """ConfigError unless teacher and student share a vocabulary: equal sizes,
    and equal vocab files where both are known."""
    if teacher_cfg.vocab_size != student_cfg.vocab_size:
        raise ConfigError(
            f"distill.teacher={path} has vocab_size={teacher_cfg.vocab_size} but the student's "
            f"model.vocab_size={student_cfg.vocab_size}; teacher and student must share one vocabulary"
        )
    known = [f for f in (teacher_vocab, student_vocab) if f and os.path.isfile(f)]
    if len(known) == 2 and not _same_file_contents(*known):
        raise ConfigError(
            f"distill.teacher={path} was trained with {teacher_vocab} but the student reads {student_vocab} "
            f"(same size {student_cfg.vocab_size}, different tokens); use the teacher's vocab file"
        )


def teacher_config(loaded: ModelConfig, student_cfg: ModelConfig) -> ModelSpec:
    """The teacher as the step runs it: MLM head only (no pooler or pair
    head), unrolled, in the student's compute and parameter dtypes."""
    student = execution_of(student_cfg)
    execution = Execution(dtype=student.dtype, param_dtype=student.param_dtype)
    return loaded.replace(pair_head="none").with_execution(execution)


def place_teacher(path: str, loaded: Any, cfg: ModelSpec, mesh: Mesh, rules=sharding_lib.RULES,
                  what: str = "distill.teacher") -> tuple[Any, Any]:
    """(params, shardings) of `BertForPreTraining(cfg)` from the loaded tree
    (canonical layout; stacked here when `cfg` scans its layers), each leaf
    placed over `mesh` by the rule table (as the student's are);
    CheckpointError (naming `what`=path) when the MLM head or another
    parameter is missing."""
    given = checkpoints.flatten_params(checkpoints.with_layer_layout(loaded, cfg))
    if not any(k[0] == "mlm" for k in given):
        raise CheckpointError(
            f"{what}={path} has no MLM head (params/mlm); it needs a pre-training workdir or checkpoint, "
            "or a Hugging Face *ForMaskedLM / *ForPreTraining folder"
        )
    shardings = checkpoints.flatten_params(state_lib.param_shardings(cfg, mesh, rules))
    placed = {}
    for key, sharding in shardings.items():
        if key not in given:
            raise CheckpointError(f"{what}={path}: parameter {'/'.join(key)} is missing")
        value = np.asarray(given[key], cfg.weight_dtype)
        placed[key] = jax.make_array_from_callback(value.shape, sharding, lambda idx, v=value: v[idx])
    return checkpoints.unflatten_params(placed), checkpoints.unflatten_params(shardings)


def step_options(config: ml_collections.ConfigDict, student_cfg: ModelConfig, mesh: Mesh,
                 student_vocab: str | None, max_seq_len: int, rules=sharding_lib.RULES) -> dict[str, Any]:
    """Keyword arguments for `step.make_train_step`: {} when
    `config.distill.teacher` is empty (or the config has no distill section),
    else `distill`, `teacher_params`, `teacher_shardings`. Every check (range
    of temperature/alpha, shared vocabulary, MLM head, position table long
    enough for `max_seq_len`) runs here, before training starts."""
    section = config.get("distill")
    if section is None or not section.get("teacher"):
        return {}
    path = str(section.teacher)
    temperature, alpha = check_settings(section)
    loaded_cfg, loaded, meta = checkpoints.load_model(path)
    check_vocab(path, loaded_cfg, student_cfg, meta.get("vocab_file"), student_vocab)
    positions = loaded_cfg.max_position_embeddings - loaded_cfg.position_offset
    if positions < max_seq_len:
        raise ConfigError(
            f"distill.teacher={path} has {positions} positions but the student trains at seq {max_seq_len}; "
            "pick a teacher with a longer position table or shorten data.max_seq_length"
        )
    cfg = teacher_config(loaded_cfg, student_cfg)
    params, shardings = place_teacher(path, loaded, cfg, mesh, rules)
    return {"distill": MlmDistill(cfg, temperature, alpha), "teacher_params": params, "teacher_shardings": shardings}
