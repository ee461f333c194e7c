"""Sequence-length phases and where each phase's batches come from.

Shared by the training loop and `evaluate`: BERT's recipe runs seq 128 for
90% of the steps, then 512; a phase names its lengths and, optionally, its own
train/eval files, else the data section's or shards built from `data.corpus`.

A phase may also set its training data's dynamic masking rate
(`masked_lm_prob`: mmBERT's 30%, then 15%, then 5%) and override model fields
that change no parameter shape (`model`: ModernBERT's context extension raises
`global_rope_theta` with the sequence length); `phase_model_config` is the
model a phase's steps run. Both are functions of the phase alone, so a run
resumed inside a phase masks and computes exactly as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections

from bert_jax.errors import ConfigError
from bert_jax.model import ModelConfig
from bert_jax.train import inputs


@dataclasses.dataclass(frozen=True)
class Phase:
    index: int
    start: int  # first step (0-based count of steps already done)
    stop: int
    seq_len: int
    max_predictions: int
    train_files: str = ""
    eval_files: str = ""
    masked_lm_prob: float = 0.0  # dynamic masking rate of the training data; 0: data.masked_lm_prob
    model: tuple[tuple[str, Any], ...] = ()  # (field, value) overrides of the model section


REQUIRED_KEYS = ("fraction", "max_seq_length", "max_predictions_per_seq")
OPTIONAL_KEYS = ("train_files", "eval_files", "masked_lm_prob", "model")
# Model fields a phase may change: they change no parameter shape, so the
# state of the phase before carries over (RoPE bases: context extension).
PHASE_MODEL_FIELDS = ("global_rope_theta", "local_rope_theta")


def resolve_phases(config: ml_collections.ConfigDict) -> list[Phase]:
    """config.phases as step ranges; none given: one phase with the data section's lengths."""
    total = int(config.total_steps)
    raw = list(config.phases or [])
    if not raw:
        return [Phase(0, 0, total, config.data.max_seq_length, config.data.max_predictions_per_seq)]
    phases, start = [], 0
    for i, p in enumerate(raw):
        p = _phase_dict(i, p)
        stop = total if i == len(raw) - 1 else min(total, start + round(float(p["fraction"]) * total))
        phases.append(
            Phase(
                i,
                start,
                stop,
                int(p["max_seq_length"]),
                int(p["max_predictions_per_seq"]),
                p.get("train_files", ""),
                p.get("eval_files", ""),
                _masked_lm_prob(i, p, config.data),
                _model_overrides(i, p, config.model),
            )
        )
        start = stop
    return phases


def _phase_dict(i: int, p) -> dict:
    """phases[i] as a plain dict, with every required key and no unknown one
    (a misspelt key would otherwise be ignored without a word)."""
    p = p.to_dict() if isinstance(p, ml_collections.ConfigDict) else dict(p)
    for key in REQUIRED_KEYS:
        if key not in p:
            raise ConfigError(
                f"phases[{i}] has no {key!r}; each phase needs fraction, max_seq_length, max_predictions_per_seq"
            )
    unknown = sorted(set(p) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ConfigError(
            f"phases[{i}] has unknown key(s) {', '.join(map(repr, unknown))}; a phase takes "
            f"{', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}"
        )
    return p


def _masked_lm_prob(i: int, p: dict, data_cfg) -> float:
    """phases[i].masked_lm_prob (0.0 when unset): a rate in (0, 1) that dynamic
    masking applies, with room for it in max_predictions_per_seq."""
    if "masked_lm_prob" not in p:
        return 0.0
    rate = float(p["masked_lm_prob"])
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"phases[{i}].masked_lm_prob={rate}; use a masking rate in (0, 1), e.g. 0.15")
    if data_cfg.masking != "dynamic":
        raise ConfigError(
            f"phases[{i}].masked_lm_prob={rate} with data.masking={data_cfg.masking!r}: static masks are fixed "
            "in the shards; set data.masking='dynamic' (shards made unmasked) or drop the phase's masked_lm_prob"
        )
    seq, most = int(p["max_seq_length"]), int(p["max_predictions_per_seq"])
    wanted = round(rate * (seq - 2))
    if most < wanted:
        raise ConfigError(
            f"phases[{i}].max_predictions_per_seq={most} caps masked_lm_prob={rate} at seq {seq} "
            f"(a full row masks {wanted}); set max_predictions_per_seq >= {wanted}"
        )
    return rate


def _model_overrides(i: int, p: dict, model_section) -> tuple[tuple[str, Any], ...]:
    """phases[i].model as sorted (field, value) pairs: only fields of
    PHASE_MODEL_FIELDS, which leave every parameter's shape as it is, and
    only for a RoPE model (a learned position table has no base to change)."""
    model = p.get("model") or {}
    if isinstance(model, ml_collections.ConfigDict):
        model = model.to_dict()
    if not isinstance(model, dict):
        raise ConfigError(
            f"phases[{i}].model={model!r}; give a dict of model fields, e.g. {{'global_rope_theta': 160000.0}}"
        )
    if model and model_section.get("position_embedding", "absolute") != "rope":
        raise ConfigError(
            f"phases[{i}].model sets {', '.join(sorted(model))} but model.position_embedding="
            f"{model_section.get('position_embedding', 'absolute')!r} has no RoPE base; drop the phase's model overrides"
        )
    refused = sorted(set(model) - set(PHASE_MODEL_FIELDS))
    if refused:
        raise ConfigError(
            f"phases[{i}].model overrides {', '.join(refused)}; a phase may change only "
            f"{', '.join(PHASE_MODEL_FIELDS)} (fields that change no parameter shape): set the others in the "
            "model section"
        )
    for key, value in model.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"phases[{i}].model.{key}={value!r}; use a positive number, e.g. 160000.0")
    return tuple(sorted((k, float(v)) for k, v in model.items()))


def phase_model_config(model_cfg: ModelConfig, phase: Phase) -> ModelConfig:
    """The model `phase`'s steps run: `model_cfg` with the phase's overrides."""
    return model_cfg.replace(**dict(phase.model)) if phase.model else model_cfg


def phase_at(phases: list[Phase], step: int) -> Phase:
    """The phase that runs step `step` (0-based count of steps done before it)."""
    for p in phases:
        if p.start <= step < p.stop:
            return p
    return phases[-1]


def phase_files(config, workdir: str, phase: Phase) -> tuple[str, str]:
    """(train_files, eval_files) of a phase: its own, the data section's, or
    built in the workdir from data.corpus."""
    train = phase.train_files or config.data.train_files
    evals = phase.eval_files or config.data.eval_files
    if config.data.corpus and not train and not config.data.get("synthetic", False):
        built_train, built_eval = inputs.prepare_corpus_data(
            config.data, workdir, phase.seq_len, phase.max_predictions, int(config.seed)
        )
        train, evals = built_train, evals or built_eval
    return train, evals


def source_spec(global_batch: int, batch_sharding, phase: Phase) -> inputs.SourceSpec:
    """This process's rows of each global batch: those its devices hold."""
    rows = [idx[0] for idx in batch_sharding.addressable_devices_indices_map((global_batch,)).values()]
    start = min(r.start or 0 for r in rows)
    stop = max(global_batch if r.stop is None else r.stop for r in rows)
    return inputs.SourceSpec(
        global_batch,
        start,
        stop,
        phase.seq_len,
        phase.max_predictions,
        jax.process_index(),
        jax.process_count(),
        phase.masked_lm_prob,
    )


def default_source_factory(config, workdir: str, model_cfg: ModelConfig) -> inputs.SourceFactory:
    if config.data.get("synthetic", False):
        return inputs.synthetic_factory(model_cfg.vocab_size, int(config.seed))
    return inputs.pipeline_factory(config.data, int(config.seed), resolved_vocab_file(config, workdir))


def resolved_vocab_file(config, workdir: str) -> str:
    if config.data.vocab_file:
        return config.data.vocab_file
    built = os.path.join(workdir, "vocab.txt")
    return built if os.path.isfile(built) else ""
