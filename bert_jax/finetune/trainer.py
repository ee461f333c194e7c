"""Fine-tune a checkpoint on one task, keep the best dev checkpoint, report.

`run(config, workdir)` is what `bert-jax finetune` calls:

* `mode=train`: load `init_checkpoint` (ours, a workdir, an HF or Google
  folder) through `bert_jax.checkpoints.load_model`, add the task head,
  fine-tune for `total_steps` (or `num_epochs`), evaluate on dev every
  `eval_every_steps` and at the end, keep the best dev checkpoint in
  `WORKDIR/best/` and write `WORKDIR/results.json` (and the resolved config,
  `WORKDIR/config.json`, first). Several `seeds` run one
  after another in `WORKDIR/seed_<s>/` and are summarised as mean/std.
  Each batch is cut to its length bucket (`config.length_buckets`,
  `bert_jax.finetune.buckets`), and a sequence head's batch is packed,
  several examples a row (`config.packing`, `bert_jax.finetune.packing`): the
  same results, less work on padding.
  The step is the engine's (`bert_jax.train.engine`); the loop
  (`bert_jax.finetune.runner`, shared with distillation and pruning) has pre-training's reliability: the workdir
  lock, metrics.jsonl and TensorBoard, orbax checkpoints of the TrainState,
  data position and best-so-far parameters in RUN_DIR/checkpoints every
  `checkpoint_every_steps` and at the end, exact resume from there, and a
  checkpoint after SIGTERM/SIGINT (the shared pieces are `train.loop`'s and
  `train.resume`'s).
* `mode=predict`: restore `WORKDIR/best/` (or `init_checkpoint`, when it holds
  a fine-tuned head) and write predictions for `predict_file`. Formats this
  layer cannot read (a Qwix-quantised checkpoint lives in `bert_jax.compress`)
  come in as `restorers` from the command.

The fine-tuned checkpoint is a plain model checkpoint (`save_model`): the
head lives in `params` beside `bert` (`classifier/{kernel [hidden, labels],
bias}` or `qa_outputs/{kernel [hidden, 2], bias}`), `model_config.json` has
`num_labels`, and `head.json` says `{"task", "head", "labels"}`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from bert_jax import atomic, checkpoints
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.finetune import buckets as length_buckets
from bert_jax.finetune import packing, runner, tasks
from bert_jax.finetune import step as ft_step
from bert_jax.model import Execution, ModelConfig, ModelSpec
from bert_jax.train import engine, optim, sharding
from bert_jax.train import loop as loop
from bert_jax.train import resume as resume_lib

HEAD_FILE = "head.json"
RESULTS_FILE = "results.json"
CONFIG_FILE = "config.json"
BEST_DIR = "best"


# --------------------------------------------------------------------------
# Checkpoint and tokenizer


def load_tokenizer(config, meta: dict, checkpoint: str):
    """The tokenizer of `config.vocab_file` (any kind: vocab.txt, a SentencePiece
    .model, vocab.json + merges.txt, or a folder), else the checkpoint folder's
    own; `config.lower_case` None: the checkpoint's setting, else the kind's.
    Every task reads every kind."""
    from bert_jax import features

    vocab = config.get("vocab_file") or None
    if not vocab and not meta.get("vocab_file"):
        raise ConfigError(f"{checkpoint} carries no tokenizer files; set config.vocab_file")
    lower_case = config.get("lower_case")
    if lower_case is None:
        lower_case = meta.get("lower_case")
    return features.load_tokenizer(checkpoint, meta, vocab, lower_case)


def check_vocab(model_cfg: ModelConfig, tokenizer, checkpoint: str) -> None:
    """Refuses a vocab whose size differs from the checkpoint's embedding table."""
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise CheckpointError(
            f"{checkpoint} has vocab_size {model_cfg.vocab_size} but {tokenizer.vocab_file} has "
            f"{tokenizer.vocab_size} tokens; use the vocab the checkpoint was trained with"
        )


INITS = ("pretrained", "random")


def config_init(config) -> str:
    """`config.init`, checked: "pretrained" or "random"."""
    init = config.get("init", "pretrained")
    if init not in INITS:
        raise ConfigError(f"config.init={init!r}; expected one of {', '.join(INITS)}")
    return init


def starting_weights(init: str, params: dict) -> dict:
    """The encoder weights fine-tuning starts from: the checkpoint's
    (`init="pretrained"`, load_model's canonical layout, what the unrolled
    model reads) or none (`"random"`: `init_params` initialises every leaf
    afresh, so only the checkpoint's architecture and tokenizer are used)."""
    return params if init == "pretrained" else {"bert": {}}


def finetune_config(model_cfg: ModelConfig, num_labels: int, config) -> ModelSpec:
    """The checkpoint's architecture with the task's label count and, where
    set, the config's `pooling`, run with the config's compute dtype
    (unrolled layers, the canonical layout the checkpoint's params are in)."""
    architecture = model_cfg.replace(num_labels=num_labels, pooling=config.get("pooling") or model_cfg.pooling)
    return architecture.with_execution(Execution(dtype=config.get("dtype", "float32")))


# --------------------------------------------------------------------------
# Optimizer


def optimizer(config, total_steps: int) -> optim.Optimizer:
    """AdamW with linear warmup (`warmup` fraction of the steps) and linear
    decay, with its schedule (the engine logs the step's learning rate)."""
    opt_cfg = config.optimizer.copy_and_resolve_references()
    with opt_cfg.unlocked():  # the fine-tuning config's one pair (finetune/config.py)
        opt_cfg.learning_rate = config.learning_rate
        opt_cfg.warmup_steps = int(round(config.warmup * total_steps))
    return optim.make_optimizer(opt_cfg, total_steps)


def make_optimizer(config, total_steps: int):
    """`optimizer(...)`'s optax transformation alone."""
    return optimizer(config, total_steps).tx


# --------------------------------------------------------------------------
# Batching


def config_buckets(config) -> tuple[int, ...]:
    """`config.length_buckets` resolved against `config.max_seq_length`
    (`buckets.resolve`: None -> automatic, () -> off); ConfigError when bad."""
    return length_buckets.resolve(config.get("length_buckets"), config.max_seq_length)


def config_packing(config) -> bool:
    """`config.packing` (a bool: the config's type check refuses others); True
    when the config has no such key (a run saved before packing existed)."""
    return bool(config.get("packing", True))


def pack_step(config, head: str, batch_size: int, mesh, accum: int = 1) -> int:
    """Rows of a packed batch of `batch_size` examples come in steps of this
    (`packing.row_step`, a multiple of the mesh's batch split); 0 when the
    batch is not packed: `config.packing` off, a token or span head, or
    gradient accumulation (`accum` > 1: its micro-batches split the rows and
    the examples apart, and an example's row may land in another)."""
    if not config_packing(config) or head not in packing.PACKED_HEADS or accum > 1:
        return 0
    return packing.row_step(batch_size, sharding.data_parallel_size(mesh))


def layout(batch: dict[str, np.ndarray], buckets: tuple[int, ...], pack_step: int = 0) -> dict[str, np.ndarray]:
    """A host batch as the step runs it: packed (`pack_step` > 0; rows of its
    longest example's bucket, or of the full width when bucketing is off), cut
    to its length bucket, or as it is."""
    if pack_step:
        return packing.pack(batch, buckets or (batch["input_ids"].shape[1],), pack_step)
    return length_buckets.to_bucket(batch, buckets)


def num_train_steps(config, num_examples: int) -> int:
    if config.total_steps > 0:
        return int(config.total_steps)
    if config.num_epochs <= 0:
        raise ConfigError("set config.total_steps or config.num_epochs to a positive value")
    return max(1, math.ceil(config.num_epochs * num_examples / config.batch_size))


def batch_rows(n: int, batch_size: int, seed: int):
    """Endless `[batch_size]` row indices into `n` examples: one shuffled
    pass after another (a pass's tail continues into the next, so every
    example is seen once per pass)."""
    rng = np.random.default_rng(seed)
    order = np.empty(0, np.int64)
    while True:
        while len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(n)])
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def train_batches(features: dict[str, np.ndarray], batch_size: int, seed: int, buckets: tuple[int, ...] = (),
                  start: int = 0, pack_step: int = 0):
    """Endless fixed-size batches of `batch_rows`, from the `start`-th on (a
    resumed run's position: the rows are drawn, not gathered, up to there).
    With `buckets`, each batch (the same rows, in the same order) is cut to
    the bucket of its longest example (`buckets.to_bucket`); with `pack_step`,
    packed instead (`layout`)."""
    rows = batch_rows(len(features["input_ids"]), batch_size, seed)
    for _ in range(start):
        next(rows)
    for idx in rows:
        yield layout({k: v[idx] for k, v in features.items()}, buckets, pack_step)


def eval_batches(features: dict[str, np.ndarray], batch_size: int):
    """Fixed-size batches in order; the last is padded with weight-0 copies of row 0."""
    n = len(features["input_ids"])
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        pad = batch_size - len(idx)
        batch = {k: v[np.concatenate([idx, np.zeros(pad, np.int64)])] for k, v in features.items()}
        if "weights" in batch:
            batch["weights"] = batch["weights"].copy()
            batch["weights"][len(idx) :] = 0
        yield batch, len(idx)


def predict(predict_fn, params, features: dict[str, np.ndarray], batch_size: int, mesh,
            head: str = "classification", buckets: tuple[int, ...] = (), pack_step: int = 0):
    """Outputs for all rows in order: `[n, ...]` NumPy (a tuple for spans).

    With `buckets` (not for spans: `buckets.for_head`), rows are batched in
    order of length and each batch is cut to its bucket; the outputs come back
    in the rows' original order, the token head's padded back to the full
    width with zeros at the cut (padding) positions. With `pack_step` (a
    sequence head), each batch is packed (`layout`)."""
    buckets = length_buckets.for_head(head, buckets)
    inputs = {k: features[k] for k in ft_step.INPUTS}
    if not buckets and not pack_step:
        return _predict_in_order(predict_fn, params, inputs, batch_size, mesh, ())
    order = length_buckets.length_order(inputs["input_mask"])
    out = _predict_in_order(predict_fn, params, {k: v[order] for k, v in inputs.items()}, batch_size, mesh, buckets,
                            pack_step)
    restore = np.argsort(order)
    return jax.tree.map(lambda x: x[restore], out)


def _predict_in_order(predict_fn, params, inputs: dict[str, np.ndarray], batch_size: int, mesh,
                      buckets: tuple[int, ...], pack_step: int = 0):
    """`predict` of the rows as given, each batch cut to its bucket (or
    packed); outputs with a sequence axis (`[batch, seq, labels]`) padded back
    to full width."""
    width = inputs["input_ids"].shape[1]
    parts = []
    for batch, valid in eval_batches(inputs, batch_size):
        out = jax.device_get(predict_fn(params, place(layout(batch, buckets, pack_step), mesh)))
        parts.append(jax.tree.map(lambda x, valid=valid: _full_width(np.asarray(x)[:valid], width), out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def _full_width(x: np.ndarray, width: int) -> np.ndarray:
    """Token-head outputs `[batch, seq, labels]` back to `width` columns; other
    outputs (`[batch, labels]`; spans never run cut) unchanged."""
    return length_buckets.pad_columns(x, width) if x.ndim >= 3 else x


def place(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """A host batch as global arrays split over the mesh's data axes."""
    return jax.device_put(batch, sharding.batch_sharding(mesh))


def accum_steps(config) -> int:
    """`config.optimizer.grad_accum_steps` (1 when the section has none)."""
    return int(config.optimizer.get("grad_accum_steps", 1))


def make_mesh(config):
    """The pre-training mesh builder; both batch sizes (the training batch's
    micro-batches, with gradient accumulation) must split over it."""
    mesh = sharding.make_mesh(config.mesh)
    sharding.check_batch_size(config.batch_size, mesh, accum_steps(config), key="config.batch_size")
    sharding.check_batch_size(config.eval_batch_size, mesh, key="config.eval_batch_size")
    return mesh


# --------------------------------------------------------------------------
# Training


def evaluate(
    predict_fn, params, prepared: tasks.Prepared, batch_size: int, mesh, buckets: tuple[int, ...] = (),
    pack_step: int = 0,
) -> dict[str, dict[str, float]]:
    """{dev set name: metrics}; `buckets` and `pack_step` as in `predict`."""
    return {
        name: ev.score(predict(predict_fn, params, ev.features, batch_size, mesh, prepared.head, buckets,
                               pack_step))
        for name, ev in prepared.dev.items()
    }


def dev_metrics(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """One flat dict: the "dev" set's metrics, other sets' prefixed (e.g. MNLI's
    `dev_mismatched` -> `mismatched_accuracy`)."""
    out = dict(scores.get("dev", {}))
    for name, values in scores.items():
        if name != "dev":
            prefix = name.removeprefix("dev_")
            out.update({f"{prefix}_{k}": v for k, v in values.items()})
    return out


def fine_tune(config, prepared: tasks.Prepared, model_cfg: ModelConfig, pretrained: dict, seed: int,
              run_dir: str | os.PathLike | None = None, stop=None, after_step: Callable[[int], None] | None = None):
    """Trains one seed. Returns (best dev metrics, best step, best params as
    NumPy, seconds spent training). Batches of a sequence head are packed
    (`config.packing`), the others cut to `config.length_buckets`
    (`config_buckets`); each shape compiles the train and predict steps once.
    With `run_dir`: resumes from RUN_DIR/checkpoints, checkpoints, logs and
    stops on `stop` as `runner.run_steps` says (`runner.Stopped` then)."""
    buckets = length_buckets.for_head(prepared.head, config_buckets(config))
    cfg = finetune_config(model_cfg, prepared.num_labels, config)
    model = ft_step.make_model(prepared.head, cfg)
    rng = jax.random.PRNGKey(seed)
    init_rng, rng = jax.random.split(rng)
    mesh = make_mesh(config)
    rules = sharding.rules_of(config.mesh)
    params = ft_step.init_params(model, config.max_seq_length, init_rng, pretrained, mesh, rules)
    total = num_train_steps(config, len(prepared.train["input_ids"]))
    opt = optimizer(config, total)
    state, shardings = engine.init_state(params, opt, rng, mesh)
    train_step = ft_step.make_train_step(model, prepared.head, opt, mesh, rules, shardings,
                                         accum_steps=accum_steps(config))
    predict_fn = ft_step.make_predict_step(model, prepared.head, mesh, rules)
    train_pack = pack_step(config, prepared.head, config.batch_size, mesh, accum_steps(config))
    eval_pack = pack_step(config, prepared.head, config.eval_batch_size, mesh)

    def scores(params):
        return dev_metrics(evaluate(predict_fn, params, prepared, config.eval_batch_size, mesh, buckets, eval_pack))

    files = runner.RunFiles(run_dir, config) if run_dir is not None else None
    start = time.time()
    try:
        best = runner.Best()
        if files is not None:
            state, best = files.restore(state, shardings, int(config.batch_size))
        done = int(jax.device_get(state.step))
        batches = (place(b, mesh) for b in train_batches(prepared.train, config.batch_size, seed, buckets, done,
                                                         train_pack))
        _, best = runner.run_steps(config, state, train_step, rng, batches, scores, prepared.primary, total, files, stop,
                            after_step, best=best)
    finally:
        if files is not None:
            files.close()
    return best.metrics, best.step, best.params, time.time() - start


def save_best(path: pathlib.Path, cfg: ModelConfig, params: dict, head: dict, tokenizer,
              overwrite: bool = True) -> None:
    """The best checkpoint (its tokenizer of any kind included) and its
    `head.json`, renamed into place when complete (`checkpoints.save_model`)."""
    checkpoints.save_model(path, cfg, params, vocab_file=tokenizer.vocab_file, lower_case=tokenizer.lower_case,
                           overwrite=overwrite, extra_files={HEAD_FILE: head_json(head)})


def head_json(head: dict) -> str:
    """The text of a checkpoint's `head.json`."""
    return json.dumps(head, indent=2) + "\n"


def write_json(path: pathlib.Path, obj: Any) -> None:
    """Writes JSON atomically (never a half-written file)."""
    atomic.write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def summarize(runs: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and (population) std of each dev metric over seeds."""
    keys = runs[0]["dev"].keys()
    mean = {k: float(np.mean([r["dev"][k] for r in runs])) for k in keys}
    std = {k: float(np.std([r["dev"][k] for r in runs])) for k in keys}
    return mean, std


def train(config, workdir: str | os.PathLike, after_step: Callable[[int], None] | None = None) -> dict:
    """Fine-tunes `config.init_checkpoint` on `config.task` for each seed;
    returns (and writes to WORKDIR/results.json) the final dev metrics.

    Holds WORKDIR/.lock; each seed resumes from its RUN_DIR/checkpoints
    (RUN_DIR: WORKDIR, or WORKDIR/seed_<s> for several seeds). SIGTERM or
    SIGINT saves a checkpoint after the current step and returns
    `{"task", "stopped_at_step", "seed"}` (no results.json): rerunning the
    same command finishes the run as if it had never stopped.
    `after_step(i)` runs after each step (tests)."""
    workdir = pathlib.Path(workdir)
    if not config.init_checkpoint:
        raise ConfigError(
            "config.init_checkpoint is empty; point it at a bert-jax checkpoint or an HF folder"
        )
    config_buckets(config)  # a bad value fails before any loading
    init = config_init(config)
    if config.get("on_nan", "stop") not in ("stop", "skip"):
        raise ConfigError(f"config.on_nan={config.on_nan!r}; expected 'stop' or 'skip'")
    model_cfg, params, meta = checkpoints.load_model(config.init_checkpoint)
    tokenizer = load_tokenizer(config, meta, config.init_checkpoint)
    check_vocab(model_cfg, tokenizer, config.init_checkpoint)
    prepared = tasks.prepare(config, tokenizer)
    pretrained = starting_weights(init, params)
    seeds = list(config.seeds or ()) or [config.seed]
    loop.prepare_workdir(str(workdir))
    with (
        loop.workdir_lock(str(workdir), enabled=jax.process_index() == 0),
        loop.StopFlag() as stop,
        resume_lib.library_logs_to(str(workdir / resume_lib.ERROR_LOG)),
    ):
        return _train_seeds(config, workdir, model_cfg, pretrained, tokenizer, prepared, seeds, stop, after_step)


def _train_seeds(config, workdir: pathlib.Path, model_cfg: ModelConfig, pretrained: dict, tokenizer, prepared,
                 seeds: list[int], stop, after_step) -> dict:
    # The resolved config: quantize / prune / export read the task, data_dir and
    # max_seq_length of this workdir from it (as they do from distill's).
    write_json(workdir / CONFIG_FILE, config.to_dict())
    head = {"task": prepared.task, "head": prepared.head, "labels": prepared.labels}
    cfg = finetune_config(model_cfg, prepared.num_labels, config)
    runs = []
    for seed in seeds:
        run_dir = workdir if len(seeds) == 1 else workdir / f"seed_{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            best, best_step, best_params, seconds = fine_tune(config, prepared, model_cfg, pretrained, seed,
                                                              run_dir, stop, after_step)
        except runner.Stopped as e:
            loop.say(f"stopped by signal at step {e.step} (seed {seed}); checkpoint saved in {run_dir}/checkpoints; "
                     "rerun the same command to resume")
            return {"task": prepared.task, "stopped_at_step": e.step, "seed": seed}
        if config.keep_best:
            save_best(run_dir / BEST_DIR, cfg.architecture, best_params, head, tokenizer)
        run = {"seed": seed, "dev": best, "best_step": best_step, "train_seconds": round(seconds, 1)}
        if len(seeds) > 1:
            write_json(run_dir / RESULTS_FILE, {"task": prepared.task, **run})
        runs.append(run)
    results = {
        "task": prepared.task,
        "init_checkpoint": str(config.init_checkpoint),
        "init": config_init(config),
        "total_steps": num_train_steps(config, len(prepared.train["input_ids"])),
    }
    if len(runs) == 1:
        results.update(runs[0])
    else:
        mean, std = summarize(runs)
        results.update(seeds=seeds, dev=mean, dev_std=std, runs=runs)
    write_json(workdir / RESULTS_FILE, results)
    return results


# --------------------------------------------------------------------------
# Prediction


def read_head(path: str | os.PathLike) -> dict:
    """`path/head.json` `{"task", "head", "labels"}`; CheckpointError when missing."""
    head_file = pathlib.Path(path) / HEAD_FILE
    if not head_file.is_file():
        raise CheckpointError(
            f"{head_file} is missing; predict needs a checkpoint written by finetune training"
        )
    return json.loads(head_file.read_text())


def load_finetuned(path: str | os.PathLike):
    """(ModelConfig, params, meta, head) of a checkpoint written by `train`."""
    head = read_head(path)
    cfg, params, meta = checkpoints.load_model(path)
    return cfg, params, meta, head


@dataclasses.dataclass
class Restored:
    """A fine-tuned model as predict mode runs it: `model.apply({"params":
    params}, input_ids, input_mask, segment_ids)` gives the head's outputs."""

    cfg: ModelConfig
    model: Any
    params: Any
    meta: dict
    head: dict


# A reader of another checkpoint format (e.g. `compress.quantize.restore_for_predict`):
# a Restored, or None when the folder is not of its format.
Restorer = Callable[[pathlib.Path], "Restored | None"]


def restore(source: pathlib.Path, restorers: Sequence[Restorer] = (), execution: Execution | None = None) -> Restored:
    """The first of `restorers` that reads `source`, else a checkpoint written by
    `train` (or by pruning: `heads_per_layer` in its model_config.json), its
    model run as `execution` says (None: `Execution()`; the checkpoint holds
    the architecture only)."""
    for reader in restorers:
        restored = reader(source)
        if restored is not None:
            return restored
    cfg, params, meta, head = load_finetuned(source)
    return Restored(cfg, ft_step.make_model(head["head"], cfg.with_execution(execution)), params, meta, head)


def check_predict_file(path: str) -> None:
    """ConfigError naming `config.predict_file` when it is missing or a
    directory (checked before any checkpoint is loaded)."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ConfigError(
            f"config.predict_file={path} is a directory, not a file; name the file to predict, "
            f"e.g. {path / 'test.tsv'}"
        )
    if not path.exists():
        raise ConfigError(f"config.predict_file={path} does not exist; pass a test file of the task")


def predict_file(config, workdir: str | os.PathLike, restorers: Sequence[Restorer] = ()) -> pathlib.Path:
    """Writes predictions for `config.predict_file` with the fine-tuned
    checkpoint (`WORKDIR/best`, or `init_checkpoint` when it has a head.json),
    read by `restore(source, restorers)`; returns the output path
    (`config.predict_output` or WORKDIR/predictions.*)."""
    workdir = pathlib.Path(workdir)
    if not config.predict_file:
        raise ConfigError("mode=predict needs config.predict_file (a test file of the task)")
    check_predict_file(config.predict_file)
    buckets = config_buckets(config)
    source = workdir / BEST_DIR
    if config.init_checkpoint and (pathlib.Path(config.init_checkpoint) / HEAD_FILE).is_file():
        source = pathlib.Path(config.init_checkpoint)
    restored = restore(source, restorers, Execution(dtype=config.get("dtype", "float32")))
    cfg, params, meta, head = restored.cfg, restored.params, restored.meta, restored.head
    if head["task"] != tasks.module_for(config.task).get_task(config.task).name:
        raise ConfigError(f"{source} was fine-tuned for {head['task']!r}, not config.task={config.task!r}")
    tokenizer = load_tokenizer(config, meta, str(source))
    check_vocab(cfg, tokenizer, str(source))
    module = tasks.module_for(config.task)
    features, context = module.predict_inputs(config, tokenizer, config.predict_file)
    mesh = make_mesh(config)
    params = jax.device_put(params, sharding.replicated(mesh))
    predict_fn = ft_step.make_predict_step(restored.model, head["head"], mesh, sharding.rules_of(config.mesh))
    outputs = predict(predict_fn, params, features, config.eval_batch_size, mesh, head["head"], buckets,
                      pack_step(config, head["head"], config.eval_batch_size, mesh))
    out_path = pathlib.Path(config.get("predict_output") or workdir / module.PREDICTIONS_FILE)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(out_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        module.write_predictions(config, outputs, context, head["labels"], f)
    return out_path


def run(config, workdir: str | os.PathLike, restorers: Sequence[Restorer] = ()):
    """`mode=train` -> the results dict; `mode=predict` -> the predictions path
    (`restorers` read checkpoint formats beyond `train`'s, see `restore`)."""
    tasks.family(config.task)  # an unknown task fails before any loading
    if config.mode == "train":
        return train(config, workdir)
    if config.mode == "predict":
        return predict_file(config, workdir, restorers)
    raise ConfigError(f"config.mode={config.mode!r}; expected 'train' or 'predict'")
