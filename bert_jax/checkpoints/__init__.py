"""Every checkpoint format bert-jax reads, and the one it writes.

`load_model(path) -> (ModelConfig, params, meta)` is the one entry point the
consumers (extract-features, finetune, evaluate, init_checkpoint, convert) use.
It takes

* a model checkpoint (what `save_model` / `bert-jax convert` writes):
  `model_config.json`, `params/` (orbax StandardCheckpointer), and when known
  the tokenizer's files and `tokenizer_config.json` (`{"do_lower_case": bool}`)
  — `ours.py`;
* a training workdir (`WORKDIR/config.json` + `WORKDIR/checkpoints/<step>/state`)
  or one of its step directories; only `params` is restored — `workdir.py`
  (saving and resuming the whole TrainState is `bert_jax.train.resume`);
* a Hugging Face folder of BERT, RoBERTa, XLM-R, CamemBERT, ALBERT or
  ModernBERT (`config.json` + `model.safetensors` or `pytorch_model.bin`; the
  family from `model_type`, docs/family.md) — `hf.py`, `hf_modernbert.py`;
* an original Google TF checkpoint (`bert_model.ckpt` prefix, or the folder
  holding it and `bert_config.json`) — `google.py`.

`params` is always the plain (unboxed) tree `module.init(...)["params"]` of
`bert_jax.model`: `bert/...` plus whichever heads exist (`mlm`, `pair`,
`classifier`), as NumPy float32 arrays, in the canonical layer layout
(unrolled `layer_i`; ALBERT's one `shared_layer`), and the ModelConfig is the
architecture alone: a consumer builds its model as
`cfg.with_execution(Execution(...))` and, if that scans the layers, stacks
them with `with_layer_layout(params, spec)` (`params.py`). `meta` is a dict: `format`, `path`, `vocab_file` and
`lower_case` (None when unknown) and, for workdirs, `step`.

The package's modules, one concern each: `files` (file names, JSON and
tokenizer files), `params` (parameter trees), `orbax_io` (orbax reads and
writes), `ours`, `workdir`, `hf` + `hf_modernbert`, `google`; this module
picks the format. Every public name is importable from `bert_jax.checkpoints`.
TensorFlow and torch are imported only inside the functions that read their
files.
"""

from __future__ import annotations

import os
import pathlib

from bert_jax.atomic import atomic_directory  # re-exported: checkpoints.atomic_directory
from bert_jax.checkpoints import hf_modernbert
from bert_jax.checkpoints.files import (
    GOOGLE_CONFIG,
    HF_CONFIG,
    HF_SAFETENSORS,
    HF_TORCH_BIN,
    MODEL_CONFIG,
    PARAMS_DIR,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    VOCAB_FILE,
    copy_tokenizer_files,
    tokenizer_files,
    tokenizer_meta,
    write_tokenizer,
)
from bert_jax.checkpoints.google import load_google_tf
from bert_jax.checkpoints.hf import (
    HF_FAMILIES,
    HFEntry,
    HFFamily,
    hf_table,
    hf_to_ours,
    load_hf,
    model_config_from_hf,
    ours_to_hf,
    params_from_hf_state,
)
from bert_jax.checkpoints.ours import load_ours, save_model
from bert_jax.checkpoints.params import (
    Params,
    check_shapes,
    expected_shapes,
    flatten_params,
    numpy_params,
    unflatten_params,
    with_layer_layout,
)
from bert_jax.checkpoints.workdir import ERROR_LOG, load_workdir, stderr_to
from bert_jax.errors import CheckpointError
from bert_jax.model import ModelConfig

__all__ = [
    "ERROR_LOG",
    "GOOGLE_CONFIG",
    "HF_CONFIG",
    "HF_FAMILIES",
    "HF_SAFETENSORS",
    "HF_TORCH_BIN",
    "MODEL_CONFIG",
    "PARAMS_DIR",
    "TOKENIZER_CONFIG",
    "TOKENIZER_JSON",
    "VOCAB_FILE",
    "HFEntry",
    "HFFamily",
    "Params",
    "atomic_directory",
    "check_shapes",
    "copy_tokenizer_files",
    "detect_format",
    "expected_shapes",
    "flatten_params",
    "hf_modernbert",
    "hf_table",
    "hf_to_ours",
    "load_google_tf",
    "load_hf",
    "load_model",
    "model_config_from_hf",
    "numpy_params",
    "ours_to_hf",
    "params_from_hf_state",
    "save_model",
    "stderr_to",
    "tokenizer_files",
    "tokenizer_meta",
    "unflatten_params",
    "with_layer_layout",
    "write_tokenizer",
]


def detect_format(path: str | os.PathLike) -> str:
    """One of bert-jax, workdir, step, hf, google-tf; CheckpointError when
    `path` is none of them, saying what was looked for."""
    path = pathlib.Path(path)
    if path.is_dir():
        if (path / MODEL_CONFIG).is_file():
            return "bert-jax"
        if (path / "checkpoints").is_dir() and (path / HF_CONFIG).is_file():
            return "workdir"
        if (path / "state").is_dir() and path.parent.name == "checkpoints" and path.name.isdigit():
            return "step"
        if (path / GOOGLE_CONFIG).is_file():
            return "google-tf"
        if (path / HF_CONFIG).is_file():
            return "hf"
        if list(path.glob("*.index")):
            raise CheckpointError(
                f"{path} holds a TF checkpoint but no {GOOGLE_CONFIG}; put the model's bert_config.json beside it"
            )
        if any((path / w).is_file() for w in (HF_SAFETENSORS, HF_TORCH_BIN)):
            raise CheckpointError(
                f"{path} holds model weights but no config.json; add the model's config.json"
            )
    elif pathlib.Path(f"{path}.index").is_file():
        return "google-tf"
    raise CheckpointError(
        f"{path} is not a checkpoint: expected a bert-jax model dir ({MODEL_CONFIG}), a training workdir "
        f"(config.json + checkpoints/), a Hugging Face folder (config.json + {HF_SAFETENSORS}) or a Google "
        f"TF checkpoint ({GOOGLE_CONFIG} + bert_model.ckpt)"
    )


def load_model(path: str | os.PathLike, step: int | None = None) -> tuple[ModelConfig, Params, dict]:
    """Any checkpoint bert-jax reads -> (ModelConfig, NumPy params, meta).

    `step` picks a workdir's step (default: the latest)."""
    path = pathlib.Path(path)
    fmt = detect_format(path)
    if fmt == "bert-jax":
        return load_ours(path)
    if fmt == "workdir":
        return load_workdir(path, step)
    if fmt == "step":
        return load_workdir(path.parent.parent, int(path.name))
    if fmt == "hf":
        return load_hf(path)
    return load_google_tf(path)
