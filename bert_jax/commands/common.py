"""What several commands' `main`s share: refusing positional arguments,
requiring flags, and the flags of the commands that turn a fine-tuned model
into another folder (prune, quantize, export)."""

from __future__ import annotations

from absl import flags

from bert_jax.errors import UserError


def no_positional_args(argv: list[str], hint: str = "all options are --flags") -> None:
    """Refuses anything after the command name that absl did not take as a flag."""
    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; {hint}")


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
