"""Checks of a pre-training or evaluation run before its first step.

A token id at or beyond the model's vocabulary, or a position beyond its
position table, does not fail inside the model: the embedding lookup gives
NaN, and the run ends many steps later with a misleading "loss is NaN" or
exits 0 with NaN metrics. So the sizes the data was made with (the shards'
metadata.json, the vocab file) are compared with the model's before any
step, and the step sizes are checked for what the batch makers can build.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bert_jax.errors import ConfigError, UserError
from bert_jax.model import ModelConfig
from bert_jax.train import inputs
from bert_jax.train.phases import Phase


def check_step_sizes(batch_size: int, phases: Sequence[Phase], model_cfg: ModelConfig, synthetic: bool) -> None:
    """A positive batch; per phase, a sequence the position table holds and
    fewer masked positions than maskable tokens ([CLS] and [SEP] never are)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; use a positive number of examples per step")
    for phase in phases:
        where = f"phases[{phase.index}]" if len(phases) > 1 else "data"
        n, p = phase.seq_len, phase.max_predictions
        shortest = 4 if synthetic else 3  # synthetic batches mask in the first half of a sequence
        if n < shortest:
            raise ConfigError(f"{where}.max_seq_length={n}; use at least {shortest} tokens per sequence")
        limit = model_cfg.max_position_embeddings - model_cfg.position_offset
        if n > limit:
            raise ConfigError(
                f"{where}.max_seq_length={n} exceeds model.max_position_embeddings="
                f"{model_cfg.max_position_embeddings}" + (f" less position_offset={model_cfg.position_offset}"
                                                          if model_cfg.position_offset else "")
                + f"; use max_seq_length <= {limit} or a larger position table"
            )
        if not 1 <= p <= n - 2:
            raise ConfigError(
                f"{where}.max_predictions_per_seq={p} with max_seq_length={n}; a sequence has at most "
                f"{n - 2} maskable tokens: use 1 to {n - 2}"
            )


def _metadata_paths(files: str) -> Iterable[str]:
    for spec in files.split(","):
        if spec.strip():
            yield spec.strip()


def check_shards_fit_model(files: str, model_cfg: ModelConfig, what: str) -> None:
    """Each created dataset in `files` (comma-separated dirs / globs) was made
    with a vocab no larger than the model's and sequences its position table
    holds; `what` names the config key in the message."""
    from bert_jax.data import records

    for spec in _metadata_paths(files):
        metadata = records.read_metadata(spec)
        vocab = metadata.get("vocab") if isinstance(metadata.get("vocab"), Mapping) else {}
        settings = metadata.get("settings") if isinstance(metadata.get("settings"), Mapping) else {}
        size = vocab.get("size")
        if isinstance(size, int) and size > model_cfg.vocab_size:
            raise ConfigError(
                f"{metadata['path']}: the shards were made with a {size}-token vocab (vocab.size) but "
                f"model.vocab_size={model_cfg.vocab_size}; their ids would index past the embedding table: "
                f"set --config.model.vocab_size={size} (a new run) or use {what} made with the model's vocab"
            )
        length = settings.get("max_seq_length")
        limit = model_cfg.max_position_embeddings - model_cfg.position_offset
        if isinstance(length, int) and length > limit:
            raise ConfigError(
                f"{metadata['path']}: settings.max_seq_length={length} exceeds the model's "
                f"max_position_embeddings={model_cfg.max_position_embeddings}; use {what} made with "
                f"max_seq_length <= {limit}"
            )


def vocab_file_size(vocab_file: str) -> int:
    """Tokens in a vocab.txt (lines), or of a SentencePiece / BPE tokenizer."""
    tokenizer = inputs._family_tokenizer(vocab_file)
    return tokenizer.vocab_size if tokenizer is not None else inputs.vocab_size_of(vocab_file)


def check_vocab_fits_model(vocab_file: str, model_cfg: ModelConfig, what: str) -> None:
    """A tokenizer whose ids reach past the model's embedding table is refused."""
    if not vocab_file or not (os.path.isfile(vocab_file) or os.path.isdir(vocab_file)):
        return
    n = vocab_file_size(vocab_file)
    if n > model_cfg.vocab_size:
        raise ConfigError(
            f"{what}={vocab_file} has {n} tokens but the model's vocab_size is {model_cfg.vocab_size}; "
            "its ids would index past the embedding table: use the model's own vocab"
        )


def check_run(
    config, model_cfg: ModelConfig, phases: Sequence[Phase], splits: Sequence[str] = ("train", "eval")
) -> None:
    """Everything above for a pre-training / evaluation config (the data
    files of `splits` only: evaluation needs no training shards)."""
    synthetic = bool(config.data.get("synthetic", False))
    check_step_sizes(int(config.batch_size), phases, model_cfg, synthetic)
    if synthetic:
        return
    check_vocab_fits_model(config.data.vocab_file, model_cfg, "data.vocab_file")
    for phase in phases:
        for key, files in (
            ("train_files", phase.train_files or config.data.train_files),
            ("eval_files", phase.eval_files or config.data.eval_files),
        ):
            if files and key.split("_")[0] in splits:
                check_shards_fit_model(files, model_cfg, f"data.{key}")


def check_finite_metrics(result: Mapping[str, Any], what: str) -> None:
    """An evaluation with a NaN/Inf metric is an error, never a result."""
    bad = {k: v for k, v in result.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        names = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
        raise UserError(
            f"evaluating {what} gave non-finite metrics ({names}); nothing was written. Check that the eval "
            "data was made with the model's vocab and lengths, and that the checkpoint's loss was finite"
        )
