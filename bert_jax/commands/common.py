"""What several commands' `main`s share: refusing positional arguments,
requiring flags, and the flags, checks and output of the commands that turn a
fine-tuned model into another folder (prune, quantize, export)."""

from __future__ import annotations

import json
import os
from typing import Any

from absl import flags

from bert_jax.errors import UserError


def no_positional_args(argv: list[str], hint: str = "all options are --flags") -> None:
    """Refuses anything after the command name that absl did not take as a
    flag; `hint` (none when empty) says where the input goes instead."""
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}" + (f"; {hint}" if hint else ""))


def require_flags(*names: str, example: str = "") -> None:
    """Refuses a run where any of the flags `names` is unset, naming all of them."""
    if all(flags.FLAGS[name].value not in (None, "") for name in names):
        return
    spelled = " and ".join(f"--{name}" for name in names)
    need = "are both required" if len(names) == 2 else "is required" if len(names) == 1 else "are required"
    raise UserError(f"{spelled} {need}" + (f", e.g. {example}" if example else ""))


def define_model_to_folder_flags() -> None:
    """--workdir (the model read) and --output/--overwrite (the folder written)."""
    flags.DEFINE_string("workdir", None, "A fine-tuning/distillation workdir, or a checkpoint with its classifier.")
    flags.DEFINE_string("output", None, "Directory to write; must not exist unless --overwrite.")
    flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")


def compress_config_flag(job: str) -> tuple[str, str]:
    """The default and the help text of a compression job's --config: a
    config file (configs/compress/JOB.py), by default
    `bert_jax.compress.config`'s JOB_config. The command defines the flag
    itself: `bert-jax COMMAND --help` lists the flags its own module defines."""
    from bert_jax.compress import config as compress_config  # imports JAX: not for every command

    default = f"{compress_config.__file__}:{job}"
    return default, f"A config file (configs/compress/{job}.py); default: bert_jax.compress.config.{job}_config."


def check_model_to_folder(argv: list[str]) -> None:
    """A model-to-folder command's checks: no positional arguments, --workdir and --output set."""
    no_positional_args(argv)
    require_flags("workdir", "output")


def print_results(results: dict[str, Any]) -> None:
    """What a model-to-folder command prints: its results.json, keys sorted."""
    print(json.dumps(results, indent=2, sort_keys=True))


def quantize_module():
    """`bert_jax.compress.quantize`, imported now (it needs Qwix, the compress
    extra); UserError naming the extra when Qwix is missing."""
    from bert_jax.compress import quantize  # raises extras.qwix_missing(...) without Qwix

    return quantize


def restore_quantized_for_predict(path: str | os.PathLike):
    """`quantize.restore_for_predict(path)` for a quantised folder (Qwix then
    needed, and named when missing); None for any other folder, Qwix untouched."""
    from bert_jax.compress import extras

    if not extras.is_quantized(path):
        return None
    return quantize_module().restore_for_predict(path)
