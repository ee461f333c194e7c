"""What the trainer needs of a task, whatever its family (GLUE, SQuAD, NER, XNLI).

A family's `prepare(config, tokenizer)` returns `Prepared`: NumPy train
features, dev sets that score their own predictions, and how to write
predictions for a file. `prepare(config, tokenizer)` here picks the family
from `config.task` in `READERS`, the one registry of task families.
"""

from __future__ import annotations

from types import ModuleType

from bert_jax.errors import ConfigError
from bert_jax.finetune import glue, ner, squad, xnli
from bert_jax.finetune.prepared import EvalSet, Prepared

__all__ = ["READERS", "EvalSet", "Prepared", "family", "module_for", "prepare"]

# Each family's reader: `prepare(config, tokenizer)`, `get_task(name)` and the
# prediction writers. A new family is one entry here and a name tuple below.
READERS: dict[str, ModuleType] = {"glue": glue, "squad": squad, "ner": ner, "xnli": xnli}


SQUAD_TASKS = ("squad", "squad1", "squad2")
NER_TASKS = ("ner", "conll2003")
XNLI_TASKS = ("xnli",)


def family(task: str) -> str:
    """`glue`, `squad`, `ner` or `xnli` (a key of READERS) for a config.task value."""
    task = task.lower()
    if task in SQUAD_TASKS:
        return "squad"
    if task in NER_TASKS:
        return "ner"
    if task in XNLI_TASKS:
        return "xnli"
    glue.get_task(task)  # raises ConfigError naming the known tasks
    return "glue"


def module_for(task: str) -> ModuleType:
    """The reader module (`glue`, `squad`, `ner`, `xnli`) of a task."""
    return READERS[family(task)]


def prepare(config, tokenizer) -> Prepared:
    if config.max_seq_length < 8:
        raise ConfigError(f"config.max_seq_length={config.max_seq_length} is too small; use at least 8")
    return module_for(config.task).prepare(config, tokenizer)
