"""Our model checkpoint, the one format bert-jax writes: a folder of
`model_config.json`, `params/` (orbax StandardCheckpointer) and, when known,
the tokenizer's files and `tokenizer_config.json`."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

from bert_jax.atomic import atomic_directory
from bert_jax.checkpoints.files import (
    MODEL_CONFIG,
    PARAMS_DIR,
    checkpoint_meta,
    model_config_from_fields,
    read_json,
    tokenizer_files,
    tokenizer_meta,
    write_json,
    write_tokenizer,
)
from bert_jax.checkpoints.orbax_io import restore_tree, save_params
from bert_jax.checkpoints.params import Params, check_shapes, numpy_params, with_layer_layout
from bert_jax.errors import CheckpointError
from bert_jax.model import ModelConfig


def save_model(
    path: str | os.PathLike,
    model_cfg: ModelConfig,
    params: Any,
    vocab_file: str | os.PathLike | None = None,
    lower_case: bool | None = None,
    overwrite: bool = False,
    extra_files: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Writes a model checkpoint directory atomically (temp dir, then rename):
    `model_config.json`, `params/`, and the tokenizer's files (`vocab.txt`;
    `vocab.json` + `merges.txt`; a SentencePiece `*.model`) and
    `tokenizer_config.json` when given (`write_tokenizer`), and `extra_files`
    `{name: text}` (a head.json, pruned_heads.json) in the same rename.
    `params` may be boxed or wrapped in `{"params": ...}`, in any layer
    layout (a scanned run's stacked layers): what is written is the
    architecture alone and the canonical layout (unrolled `layer_i`, or
    ALBERT's one `shared_layer`), whatever execution `model_cfg` carries."""
    architecture = model_cfg.architecture
    params = with_layer_layout(numpy_params(params), architecture)
    check_shapes(params, architecture, str(path))
    if vocab_file and not os.path.isfile(vocab_file):
        raise CheckpointError(f"vocab file {vocab_file} does not exist; pass an existing vocab.txt")
    if vocab_file:
        tokenizer_files(vocab_file)
    with atomic_directory(path, overwrite) as tmp:
        save_params(tmp / PARAMS_DIR, params)
        write_json(tmp / MODEL_CONFIG, architecture.to_dict())
        write_tokenizer(tmp, vocab_file, lower_case)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return pathlib.Path(path)


def load_ours(folder: pathlib.Path) -> tuple[ModelConfig, Params, dict]:
    cfg = model_config_from_fields(read_json(folder / MODEL_CONFIG), folder / MODEL_CONFIG)
    if not (folder / PARAMS_DIR).is_dir():
        raise CheckpointError(f"{folder / PARAMS_DIR} is missing; the checkpoint is incomplete")
    # Checkpoints written before the layout was canonical may hold stacked layers.
    params = with_layer_layout(restore_tree(folder / PARAMS_DIR), cfg)
    check_shapes(params, cfg, str(folder))
    vocab, lower_case = tokenizer_meta(folder, cfg.family)
    return cfg, params, checkpoint_meta("bert-jax", folder, vocab, lower_case)
