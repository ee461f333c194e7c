"""`bert-jax COMMAND [--flags]`: one console script, a module per command.

Each command lives in `bert_jax.commands.<name>`, defines its absl flags at
import and a `main(argv)`; only the chosen command's module is imported, so
`bert-jax bench` never imports TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from bert_jax.errors import UserError

COMMANDS = {
    "pretrain": ("pretrain", "pre-train a BERT from a config (MLM + NSP/SOP)"),
    "evaluate": ("evaluate", "evaluate a pre-training checkpoint on held-out data"),
    "create-data": ("create_data", "raw text -> masked sentence-pair TFRecord shards"),
    "build-vocab": ("build_vocab", "train a WordPiece, SentencePiece or byte-level BPE vocabulary"),
    "inspect-data": ("inspect_data", "preflight a corpus or created shards"),
    "tokenize": ("tokenize", "tokenize stdin (any vocabulary kind), one JSON object per line"),
    "convert": ("convert", "import/export Hugging Face and Google TF checkpoints"),
    "extract-features": ("extract_features", "per-token hidden states as JSON lines"),
    "bench": ("bench", "time the pre-training step; compare with the reference"),
    "finetune": ("finetune", "fine-tune and evaluate on GLUE / SQuAD / NER"),
    "compile": ("compile", "compile the train step ahead of time for a topology"),
    "distill": ("distill", "distil a fine-tuned teacher into a smaller student"),
    "quantize": ("quantize", "post-training int8 quantisation of a fine-tuned model"),
    "prune": ("prune", "magnitude or attention-head pruning of a fine-tuned model"),
    "export": ("export", "TensorFlow SavedModel with the tokenizer in the graph"),
}


def _usage() -> str:
    lines = ["usage: bert-jax COMMAND [--flags]   (bert-jax COMMAND --help for its flags)", ""]
    for name, (_, text) in COMMANDS.items():
        lines.append(f"  {name:<17} {text}")
    return "\n".join(lines)


def _available(module: str) -> bool:
    return importlib.util.find_spec(f"bert_jax.commands.{module}") is not None


def run(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS or not _available(COMMANDS[name][0]):
        known = ", ".join(n for n, (m, _) in COMMANDS.items() if _available(m))
        print(f"bert-jax: error: unknown command {name!r}; commands: {known}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(f"bert_jax.commands.{COMMANDS[name][0]}")
    from absl import app  # imported late: `bert-jax --help` stays instant

    try:
        app.run(module.main, argv=[f"bert-jax {name}"] + argv[2:])
    except UserError as e:
        if os.environ.get("BERT_JAX_TRACEBACK"):
            raise
        print(f"bert-jax {name}: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
