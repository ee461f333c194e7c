"""Probing during pre-training: fine-tune a copy of the current weights on a
small downstream (GLUE) set and report its dev metric.

`bert-jax pretrain` with `probe.every_steps > 0` builds the hook at start-up
and hands it to the loop, which calls it with a host copy of the parameters:

    hook = make_probe_hook(config, workdir)      # ConfigError now, not at step N
    pretraining.train(config, workdir, step_hooks=[hook])
    # metrics.jsonl: {"step": 200, "split": "probe", "accuracy": 0.81, "task": "sst2", ...}

`run_probe(model_cfg, params, probe_cfg, vocab_file, lower_case)` is one
probe by hand. `params` may be sharded, boxed or scanned: the probe gathers
them to host NumPy first and never touches the caller's arrays.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax

from bert_jax import checkpoints
from bert_jax.config import model_config
from bert_jax.errors import ConfigError
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import glue, tasks, trainer
from bert_jax.model import ModelConfig
from bert_jax.train.inputs import vocab_size_of
from bert_jax.train.phases import resolved_vocab_file
from bert_jax.train.pretraining import StepHook

PROBE_NAME = "probe"


def check_probe_config(probe_cfg) -> None:
    """Start-up checks of the `probe` section: a GLUE task, its data where
    `data_dir` says, positive counts. ConfigError naming the key otherwise."""
    try:
        family = tasks.family(str(probe_cfg.task))
    except ConfigError:
        raise ConfigError(
            f"probe.task={probe_cfg.task!r} is not a GLUE task; known: {', '.join(glue.TASKS)}"
        ) from None
    if family != "glue":
        raise ConfigError(f"probe.task={probe_cfg.task!r}; the probe runs GLUE tasks (e.g. sst2)")
    for key in ("steps", "train_examples"):
        if int(probe_cfg[key]) <= 0:
            raise ConfigError(f"probe.{key}={probe_cfg[key]}; use a positive count")
    if not probe_cfg.data_dir:
        raise ConfigError("probe.data_dir is empty; point it at the GLUE folder (holding SST-2/train.tsv)")
    if probe_cfg.get("data_source", "tsv") == "tfds":
        return  # read (and checked) by tfds at the first probe
    folder = pathlib.Path(probe_cfg.data_dir) / glue.get_task(probe_cfg.task).folder
    if not (folder / "train.tsv").is_file():
        raise ConfigError(
            f"probe.data_dir={probe_cfg.data_dir}: {folder / 'train.tsv'} does not exist; point probe.data_dir "
            "at the GLUE folder layout (e.g. SST-2/train.tsv, SST-2/dev.tsv)"
        )


def probe_config(probe_cfg, vocab_file: str, lower_case: bool):
    """A fine-tuning config for the probe: the task's defaults, the probe's
    task/data_dir/train_examples/steps, and optional learning_rate (5e-5),
    max_seq_length (128), batch_size (32), eval_batch_size (64),
    data_source (tsv); one mesh over all devices."""
    check_probe_config(probe_cfg)
    c = ft_config.finetune_config(probe_cfg.task)
    c.data_dir = probe_cfg.data_dir
    c.data_source = probe_cfg.get("data_source", "tsv")
    c.train_examples = int(probe_cfg.train_examples)
    c.total_steps = int(probe_cfg.steps)
    c.vocab_file = vocab_file
    c.lower_case = bool(lower_case)
    c.learning_rate = float(probe_cfg.get("learning_rate", 5e-5))
    c.max_seq_length = int(probe_cfg.get("max_seq_length", 128))
    c.batch_size = int(probe_cfg.get("batch_size", 32))
    c.eval_batch_size = int(probe_cfg.get("eval_batch_size", 64))
    c.log_every_steps = max(int(probe_cfg.steps), 1)
    c.keep_best = False
    return c


def _check_vocab_size(vocab_file: str, model_vocab_size: int) -> None:
    """The probe's WordPiece vocab must exist and fit the embedding table."""
    try:
        n = vocab_size_of(vocab_file)
    except OSError as e:
        raise ConfigError(f"probe: cannot read the vocab {vocab_file} ({e.strerror or e})") from None
    if n > model_vocab_size:
        raise ConfigError(
            f"probe: {vocab_file} has {n} tokens but model.vocab_size is {model_vocab_size}; "
            "give the probe the pre-training vocab"
        )


class Probe:
    """Fine-tunes copies of parameters on the probe's task. The data is read
    and tokenized once, at the first call (a vocab built by `pretrain` from
    its corpus exists only by then)."""

    def __init__(self, model_cfg: ModelConfig, probe_cfg, vocab_file, lower_case: bool):
        """`vocab_file`: a path, or a callable returning it at the first call."""
        check_probe_config(probe_cfg)
        self.model_cfg, self.probe_cfg, self.lower_case = model_cfg, probe_cfg, lower_case
        self._vocab_file = vocab_file
        self._config, self._prepared = None, None

    def _prepare(self):
        if self._prepared is None:
            vocab = self._vocab_file() if callable(self._vocab_file) else self._vocab_file
            if not vocab:
                raise ConfigError(
                    "the probe needs a WordPiece vocab; set data.vocab_file (or probe.vocab_file)"
                )
            config = probe_config(self.probe_cfg, vocab, self.lower_case)
            _check_vocab_size(vocab, self.model_cfg.vocab_size)
            tokenizer = trainer.load_tokenizer(config, {}, "the probed model")
            self._config, self._prepared = config, tasks.prepare(config, tokenizer)
        return self._config, self._prepared

    def __call__(self, params: Any) -> dict:
        """Dev metrics of a fine-tuned copy of `params`, plus `task`, `steps`,
        `train_examples` and `seconds` (wall time of this probe)."""
        start = time.time()
        config, prepared = self._prepare()
        host = checkpoints.numpy_params(jax.device_get(params))
        # The run's layout (stacked, when it scans) -> the canonical one a
        # fine-tuning run reads, as a saved model would hold it.
        architecture = self.model_cfg.architecture
        pretrained = checkpoints.with_layer_layout(host, architecture)
        best, _, _, _ = trainer.fine_tune(config, prepared, architecture, pretrained, config.seed)
        return {
            "task": prepared.task,
            **best,
            "steps": config.total_steps,
            "train_examples": len(prepared.train["input_ids"]),
            "seconds": round(time.time() - start, 1),
        }


def run_probe(model_cfg: ModelConfig, params: Any, probe_cfg, vocab_file: str, lower_case: bool) -> dict:
    """Fine-tunes a copy of `params` on `probe_cfg.task` (GLUE) and returns
    its dev metrics plus `task`, `steps`, `train_examples`, `seconds`."""
    return Probe(model_cfg, probe_cfg, vocab_file, lower_case)(params)


def make_probe_hook(config, workdir: str) -> StepHook:
    """The loop hook of a pre-training config's `probe` section (every
    `probe.every_steps` steps); checks the section now. The vocab is
    `probe.vocab_file`, else the pre-training one (data.vocab_file or the
    one built in the workdir); lower-casing follows data.do_lower_case."""
    every = int(config.probe.every_steps)
    if every <= 0:
        raise ConfigError(f"probe.every_steps={every}; a positive step count turns the probe on")
    check_probe_config(config.probe)
    given = config.probe.get("vocab_file", "")
    known = given or config.data.vocab_file
    if known:
        _check_vocab_size(known, config.model.vocab_size)
    elif not config.data.corpus and not resolved_vocab_file(config, workdir):
        raise ConfigError("the probe needs a WordPiece vocab; set probe.vocab_file (or data.vocab_file)")
    # else: the loop builds WORKDIR/vocab.txt from data.corpus; checked at the first probe
    probe = Probe(
        model_config(config),
        config.probe,
        given or (lambda: resolved_vocab_file(config, workdir)),
        bool(config.data.do_lower_case),
    )
    return StepHook(PROBE_NAME, every, lambda step, params: probe(params))
