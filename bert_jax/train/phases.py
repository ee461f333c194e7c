"""Sequence-length phases and where each phase's batches come from.

Shared by the training loop and `evaluate`: BERT's recipe runs seq 128 for
90% of the steps, then 512; a phase names its lengths and, optionally, its own
train/eval files, else the data section's or shards built from `data.corpus`.
"""

from __future__ import annotations

import dataclasses
import os

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


def resolve_phases(config: ml_collections.ConfigDict) -> list[Phase]:
    """config.phases as step ranges; none given: one phase with the data section's lengths."""
    total = int(config.total_steps)
    raw = list(config.phases or [])
    if not raw:
        return [Phase(0, 0, total, config.data.max_seq_length, config.data.max_predictions_per_seq)]
    phases, start = [], 0
    for i, p in enumerate(raw):
        p = dict(p)
        for key in ("fraction", "max_seq_length", "max_predictions_per_seq"):
            if key not in p:
                raise ConfigError(
                    f"phases[{i}] has no {key!r}; each phase needs fraction, max_seq_length, max_predictions_per_seq"
                )
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
            )
        )
        start = stop
    return phases


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
