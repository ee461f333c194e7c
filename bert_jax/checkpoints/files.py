"""The file names of every checkpoint format, and the small readers and
writers they share: JSON files, the tokenizer's files in a checkpoint folder,
and the `meta` dict `load_model` returns."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
from collections.abc import Mapping
from typing import Any

from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.model import EXECUTION_FIELDS, ModelConfig

MODEL_CONFIG = "model_config.json"
PARAMS_DIR = "params"
VOCAB_FILE = "vocab.txt"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
HF_CONFIG = "config.json"
HF_SAFETENSORS = "model.safetensors"
HF_TORCH_BIN = "pytorch_model.bin"
GOOGLE_CONFIG = "bert_config.json"


def write_tokenizer(folder: pathlib.Path, vocab_file: str | os.PathLike | None, lower_case: bool | None) -> None:
    """Puts a tokenizer of any kind into a checkpoint folder being written:
    its files (`copy_tokenizer_files`) and `tokenizer_config.json`
    `{"do_lower_case": ...}`; each only when given. `tokenizer_meta` and
    `tokenization.load_tokenizer(folder)` read them back."""
    if vocab_file:
        copy_tokenizer_files(vocab_file, folder)
    if lower_case is not None:
        write_json(folder / TOKENIZER_CONFIG, {"do_lower_case": bool(lower_case)})


def tokenizer_files(vocab_file: str | os.PathLike) -> list[pathlib.Path]:
    """The files one tokenizer is made of: a WordPiece `vocab.txt`, a
    byte-level BPE `vocab.json` with `merges.txt` beside it, a
    SentencePiece `*.model`, or a Hugging Face `tokenizer.json` (alone)."""
    vocab_file = pathlib.Path(vocab_file)
    files = [vocab_file]
    if vocab_file.suffix == ".json" and vocab_file.name != TOKENIZER_JSON:
        files.append(vocab_file.parent / "merges.txt")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"tokenizer file {missing[0]} does not exist; pass an existing vocab file")
    return files


def copy_tokenizer_files(
    vocab_file: str | os.PathLike, folder: pathlib.Path, spm_name: str | None = None
) -> None:
    """Copies `tokenizer_files(vocab_file)` into `folder` as vocab.txt,
    vocab.json + merges.txt, tokenizer.json, or the SentencePiece model under
    `spm_name` (default its own name)."""
    for f in tokenizer_files(vocab_file):
        if f.suffix == ".model":
            name = spm_name or f.name
        elif f.name in ("merges.txt", TOKENIZER_JSON):
            name = f.name
        else:
            name = "vocab.json" if f.suffix == ".json" else VOCAB_FILE
        shutil.copyfile(f, folder / name)


def write_json(path: pathlib.Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: pathlib.Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not readable JSON ({e}); re-create it") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds {type(data).__name__}, expected a JSON object")
    return data


def model_config_from_fields(fields: Mapping, source: pathlib.Path) -> ModelConfig:
    """The architecture of a saved `model_config.json` or a workdir's `model`
    section. Execution keys (dtype, scan_layers, ...; written by checkpoints
    before they were split off, and by every workdir) are ignored: how to run
    the model is the loading run's choice."""
    architecture = {k: v for k, v in fields.items() if k not in EXECUTION_FIELDS}
    try:
        return ModelConfig.from_dict(architecture)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{source}: {e}") from None


def tokenizer_meta(folder: pathlib.Path, family: str | None = None) -> tuple[str | None, bool | None]:
    """(the tokenizer's main file: vocab.txt, vocab.json, a *.model or
    tokenizer.json, else None; do_lower_case from tokenizer_config.json, else
    None) of a checkpoint folder. A ModernBERT folder (`family`) names its
    tokenizer.json first (tokenization.load_tokenizer reads it first)."""
    candidates = [folder / VOCAB_FILE, folder / "vocab.json", *sorted(folder.glob("*.model")), folder / TOKENIZER_JSON]
    if family == "modernbert":
        candidates.insert(0, folder / TOKENIZER_JSON)
    vocab = next((c for c in candidates if c.is_file()), None)
    lower_case = None
    if (folder / TOKENIZER_CONFIG).is_file():
        lower_case = read_json(folder / TOKENIZER_CONFIG).get("do_lower_case")
    return (str(vocab) if vocab else None), lower_case


def checkpoint_meta(fmt: str, path: pathlib.Path, vocab: str | None, lower_case: bool | None, **extra) -> dict:
    return {"format": fmt, "path": str(path), "vocab_file": vocab, "lower_case": lower_case, **extra}
