"""Task distillation: a fine-tuned teacher's soft targets (and optionally its
hidden states and attention maps) train a smaller student in one jitted step.

* Losses (Hinton et al. 2015; TinyBERT / MiniLM for the intermediate ones)
  live with every other objective in `bert_jax.losses`: `soft_target_loss`,
  `distillation_loss`, `hidden_state_loss`, `attention_map_loss`;
  `total_loss` here mixes them as `LossConfig` says.
* Students: `student_from_teacher` (DistilBERT: every other teacher layer),
  `student_from_checkpoint`, `student_from_config` (fresh weights).
* The step is the engine's (`bert_jax.train.engine`) with `distill_loss`,
  the teacher's parameters its frozen argument.
* `run(config, workdir)`: what `bert-jax distill` calls. Data readers, heads,
  metrics, the optimizer, the loop (`runner.run_steps`: checkpoints, exact
  resume, SIGTERM save, metrics.jsonl) and the best-checkpoint format are
  fine-tuning's (`bert_jax.finetune`); `WORKDIR/best/` is a fine-tuned
  checkpoint, so `bert-jax quantize`, `export` and finetune's predict mode
  take WORKDIR.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from bert_jax import checkpoints, losses
from bert_jax.compress import models
from bert_jax.config import model_config
from bert_jax.errors import ConfigError, UserError
from bert_jax.finetune import runner, tasks, trainer
from bert_jax.finetune import step as ft_step
from bert_jax.model import BertForSequenceClassification, Embeddings, EncoderLayer, ModelConfig
from bert_jax.train import engine, sharding
from bert_jax.train import loop as loop
from bert_jax.train import resume as resume_lib

Params = dict[str, Any]


# --------------------------------------------------------------------------
# Losses


# --------------------------------------------------------------------------
# Intermediate outputs (captured, so the shared model needs no extra outputs)


def _capture(module: nn.Module, method_name: str) -> bool:
    if method_name != "__call__":
        return False
    if isinstance(module, (Embeddings, EncoderLayer)):
        return True
    return isinstance(module, nn.DenseGeneral) and module.name in ("query", "key")


def intermediates(tree: Params, num_layers: int) -> tuple[list[jax.Array], list[tuple[jax.Array, jax.Array]]]:
    """(hidden states [embeddings, layer 1 .. L], [(query, key) per layer]) from
    the `intermediates` collection of a `BertForSequenceClassification` apply."""
    bert = tree["bert"]
    hidden = [bert["embeddings"]["__call__"][0]]
    qk = []
    for i in range(num_layers):
        layer = bert["encoder"][f"layer_{i}"]
        hidden.append(layer["__call__"][0])
        qk.append((layer["attention"]["query"]["__call__"][0], layer["attention"]["key"]["__call__"][0]))
    return hidden, qk


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1-based output index) matched to each student layer
    1..S: `m * T // S` (TinyBERT's uniform mapping; 6 -> 3 gives 2, 4, 6)."""
    return [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    attention_weight: float = 0.0
    layer_map: tuple[int, ...] = ()

    @property
    def needs_intermediates(self) -> bool:
        return self.hidden_weight > 0 or self.attention_weight > 0


def total_loss(
    loss_cfg: LossConfig,
    s_logits: jax.Array,
    t_logits: jax.Array,
    batch: dict[str, jax.Array],
    s_inter: Params | None = None,
    t_inter: Params | None = None,
    projection: Params | None = None,
    num_layers: tuple[int, int] = (0, 0),
) -> jax.Array:
    """The configured mix of soft/hard, hidden-state and attention-map losses."""
    loss = losses.distillation_loss(s_logits, t_logits, batch["labels"], batch["weights"], loss_cfg.temperature,
                                    loss_cfg.alpha)
    if not loss_cfg.needs_intermediates:
        return loss
    s_hidden, s_qk = intermediates(s_inter, num_layers[0])
    t_hidden, t_qk = intermediates(t_inter, num_layers[1])
    mask = batch["input_mask"]
    if loss_cfg.hidden_weight > 0:
        student = s_hidden
        teacher = [t_hidden[0]] + [t_hidden[j] for j in loss_cfg.layer_map]
        loss += loss_cfg.hidden_weight * losses.hidden_state_loss(student, teacher, mask, projection)
    if loss_cfg.attention_weight > 0:
        student = [losses.attention_probs(q, k, mask) for q, k in s_qk]
        teacher = [losses.attention_probs(*t_qk[j - 1], mask) for j in loss_cfg.layer_map]
        loss += loss_cfg.attention_weight * losses.attention_map_loss(student, teacher, mask)
    return loss


def distill_loss(teacher_cfg: ModelConfig, student_cfg: ModelConfig, loss_cfg: LossConfig):
    """Task distillation's `loss_fn(train_params, batch, key, teacher_params)
    -> (loss, {"loss"})` for the engine (`bert_jax.train.engine`);
    `train_params` is `{"student": ..., and "projection" when hidden widths
    differ}`. The teacher runs in the same step, deterministic and without
    gradients (the engine's `frozen` argument)."""
    teacher, student = BertForSequenceClassification(teacher_cfg), BertForSequenceClassification(student_cfg)
    capture = _capture if loss_cfg.needs_intermediates else False
    layers = (student_cfg.num_layers, teacher_cfg.num_layers)

    def apply(model, params, batch, **kw):
        out = model.apply({"params": params}, *(batch[k] for k in ft_step.INPUTS), capture_intermediates=capture,
                          mutable=["intermediates"] if capture else False, **kw)
        return out if capture else (out, {"intermediates": None})

    def loss_fn(train_params, batch, key, teacher_params):
        t_logits, t_vars = apply(teacher, teacher_params, batch)
        t_logits, t_inter = jax.lax.stop_gradient((t_logits, t_vars["intermediates"]))
        s_logits, s_vars = apply(student, train_params["student"], batch, deterministic=False,
                                 rngs={"dropout": key})
        loss = total_loss(loss_cfg, s_logits, t_logits, batch, s_vars["intermediates"], t_inter,
                          train_params.get("projection"), layers)
        return loss, {"loss": loss}

    return loss_fn


def make_distill_step(
    teacher_cfg: ModelConfig, student_cfg: ModelConfig, loss_cfg: LossConfig, optimizer, teacher_params,
    mesh=None, state_shardings=None,
):
    """The engine's jitted `step(state, batch, rng) -> (state, metrics)` of
    `distill_loss` on a TrainState of the train params, `teacher_params`
    (placed already; not donated, never updated) bound as the frozen
    argument. With `mesh`, `state_shardings` are the state's."""
    frozen_shardings = None if mesh is None else jax.tree.map(lambda x: x.sharding, teacher_params)
    return engine.make_step(distill_loss(teacher_cfg, student_cfg, loss_cfg), optimizer, mesh=mesh,
                            state_shardings=state_shardings, frozen=teacher_params,
                            frozen_shardings=frozen_shardings)


# --------------------------------------------------------------------------
# Students


def alternate_layers(source_layers: int, student_layers: int) -> list[int]:
    """Source layer indices a student starts from: evenly spaced from layer 0
    (DistilBERT's every other layer: 6 -> 3 gives 0, 2, 4)."""
    if not 1 <= student_layers <= source_layers:
        raise ConfigError(
            f"config.student_layers={student_layers} must be between 1 and the source's {source_layers} layers"
        )
    return [i * source_layers // student_layers for i in range(student_layers)]


def student_from_params(
    source_cfg: ModelConfig, source_params: Params, student_layers: int, hidden_size: int, source: str
) -> tuple[ModelConfig, Params]:
    """A student of `student_layers` layers copied from alternate layers of a
    source model (embeddings, pooler and classifier copied when present).
    `hidden_size` 0 keeps the source width; any other width is refused: a
    checkpoint cannot initialise a wider (or narrower) model."""
    if hidden_size and hidden_size != source_cfg.hidden_size:
        wider = "wider" if hidden_size > source_cfg.hidden_size else "narrower"
        raise ConfigError(
            f"config.student_hidden_size={hidden_size} is {wider} than its initialisation source {source} "
            f"(hidden {source_cfg.hidden_size}); use that width or start from a config (student_init=configs/....py)"
        )
    cfg = source_cfg.replace(num_layers=student_layers)
    params = source_params  # load_model's canonical layout: one layer_i per layer
    picked = alternate_layers(source_cfg.num_layers, student_layers)
    encoder = {f"layer_{i}": params["bert"]["encoder"][f"layer_{j}"] for i, j in enumerate(picked)}
    return cfg, {**params, "bert": {**params["bert"], "encoder": encoder}}


def load_config_file(path: str) -> Any:
    """`get_config()` of an ml_collections config file such as configs/bert_mini.py."""
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, path)
    if spec is None or not pathlib.Path(path).is_file():
        raise ConfigError(f"config.student_init={path!r} is not a readable config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def student_init(
    teacher_cfg: ModelConfig, teacher_params: Params, config
) -> tuple[ModelConfig, Params | None, str]:
    """(student ModelConfig, initial params or None for fresh weights, what it
    came from) for `config.student_init`: "teacher" (default: alternate
    teacher layers), a `.py` config file (fresh), or any checkpoint."""
    init = config.student_init or "teacher"
    layers = config.student_layers
    if init.endswith(".py"):
        cfg = model_config(load_config_file(init)).architecture  # distillation runs as Execution()
        cfg = cfg.replace(num_layers=layers or cfg.num_layers, num_labels=teacher_cfg.num_labels)
        if config.student_hidden_size:
            cfg = cfg.replace(hidden_size=config.student_hidden_size)
        if cfg.vocab_size != teacher_cfg.vocab_size:
            raise ConfigError(
                f"{init}: vocab_size {cfg.vocab_size} differs from the teacher's {teacher_cfg.vocab_size}; "
                "the student reads the teacher's tokens, so set model.vocab_size to match"
            )
        return cfg, None, f"fresh {init}"
    if init == "teacher":
        source_cfg, source_params = teacher_cfg, teacher_params
    else:
        source_cfg, source_params, _ = checkpoints.load_model(init)
        if source_cfg.vocab_size != teacher_cfg.vocab_size:
            raise ConfigError(
                f"config.student_init={init} has vocab_size {source_cfg.vocab_size}, the teacher "
                f"{teacher_cfg.vocab_size}; initialise from a checkpoint with the teacher's vocab"
            )
        source_cfg = source_cfg.replace(num_labels=teacher_cfg.num_labels)
    cfg, params = student_from_params(source_cfg, source_params, layers or source_cfg.num_layers,
                                      config.student_hidden_size, init)
    return cfg, params, f"layers {alternate_layers(source_cfg.num_layers, cfg.num_layers)} of {init}"


def initial_params(cfg: ModelConfig, source: Params | None, seq_len: int, rng: jax.Array, mesh) -> Params:
    """Student parameters placed over `mesh`: fresh ones with every `bert/...`
    leaf of `source` (and its classifier when it has one of the right shape) copied in."""
    model = BertForSequenceClassification(cfg)
    params = ft_step.init_params(model, seq_len, rng, source if source is not None else {"bert": {}}, mesh)
    same_head = source is not None and "classifier" in source and (
        source["classifier"]["kernel"].shape == params["classifier"]["kernel"].shape
    )
    if same_head:
        head = jax.device_put(source["classifier"], jax.tree.map(lambda x: x.sharding, params["classifier"]))
        params = {**params, "classifier": head}
    return params


def projection_params(student_width: int, teacher_width: int, rng: jax.Array) -> Params | None:
    """A learned `[hs, ht]` map for hidden-state transfer when widths differ."""
    if student_width == teacher_width:
        return None
    kernel = jax.random.normal(rng, (student_width, teacher_width)) * (1.0 / np.sqrt(student_width))
    return {"kernel": kernel, "bias": jnp.zeros((teacher_width,))}


# --------------------------------------------------------------------------
# The job


def load_teacher(config) -> tuple[ModelConfig, Params, dict, dict | None]:
    """(config, params, meta, head.json or None) of `config.teacher`, with a
    classification head for `config.task`."""
    if not config.teacher:
        raise ConfigError("config.teacher is empty; point it at a fine-tuning workdir or checkpoint")
    cfg, params, meta, head = models.load_finetuned_classifier(config.teacher)
    source = meta["source"]
    task = tasks.module_for(config.task).get_task(config.task)
    if head is not None and head.get("task") != task.name:
        raise UserError(
            f"teacher {source} was fine-tuned for {head.get('task')!r}, not config.task={config.task!r}; "
            "pass a teacher fine-tuned on this task"
        )
    if cfg.num_labels != task.num_labels:
        raise UserError(
            f"teacher {source} has a {cfg.num_labels}-way head but {task.name} has {task.num_labels} labels; "
            "pass a teacher fine-tuned on this task"
        )
    return cfg, params, meta, head


def loss_config(config, student_cfg: ModelConfig, teacher_cfg: ModelConfig) -> LossConfig:
    layer_map = tuple(config.layer_map) or tuple(uniform_layer_map(student_cfg.num_layers, teacher_cfg.num_layers))
    if len(layer_map) != student_cfg.num_layers or not all(1 <= j <= teacher_cfg.num_layers for j in layer_map):
        raise ConfigError(
            f"config.layer_map={list(layer_map)} needs one teacher layer in 1..{teacher_cfg.num_layers} "
            f"per student layer ({student_cfg.num_layers})"
        )
    if config.attention_weight > 0 and student_cfg.num_heads != teacher_cfg.num_heads:
        raise ConfigError(
            f"attention-map transfer needs equal head counts (student {student_cfg.num_heads}, teacher "
            f"{teacher_cfg.num_heads}); set config.attention_weight=0"
        )
    if not 0.0 <= config.alpha <= 1.0 or config.temperature <= 0:
        raise ConfigError(f"config.alpha={config.alpha} must be in [0, 1], config.temperature={config.temperature} > 0")
    return LossConfig(config.temperature, config.alpha, config.hidden_weight, config.attention_weight, layer_map)


def throughput(cfg: ModelConfig, params: Params, config) -> float:
    """CPU-or-whatever-runs-here examples/s: batch 32 at the task's sequence length, median."""
    return models.examples_per_second(models.classifier_logits_fn(cfg), params, cfg.vocab_size,
                                      config.max_seq_length, batch_size=32, runs=config.throughput_runs)


def train_student(config, prepared, teacher_cfg, teacher_params, student_cfg, student_params, loss_cfg, seed, mesh,
                  run_dir=None, stop=None, after_step=None):
    """Distils for `total_steps`, evaluating on dev every `eval_every_steps`,
    in fine-tuning's loop (`runner.run_steps`: with `run_dir`, resumed from
    and checkpointed to RUN_DIR/checkpoints, logged to metrics.jsonl, and
    `runner.Stopped` after `stop` is set). Returns (best dev metrics, best
    step, best student params as NumPy)."""
    rng = jax.random.PRNGKey(seed)
    rng, proj_rng = jax.random.split(rng)
    train_params = {"student": student_params}
    projection = projection_params(student_cfg.hidden_size, teacher_cfg.hidden_size, proj_rng)
    if projection is not None and loss_cfg.hidden_weight > 0:
        train_params["projection"] = jax.device_put(projection, sharding.replicated(mesh))
    total = trainer.num_train_steps(config, len(prepared.train["input_ids"]))
    optimizer = trainer.optimizer(config, total)
    state, shardings = engine.init_state(train_params, optimizer, rng, mesh)
    teacher_params = jax.device_put(teacher_params, sharding.replicated(mesh))
    step = make_distill_step(teacher_cfg, student_cfg, loss_cfg, optimizer, teacher_params, mesh, shardings)
    predict_fn = ft_step.make_predict_step(BertForSequenceClassification(student_cfg), "classification", mesh)

    def scores(params):
        return models.dev_scores(predict_fn, params["student"], prepared, config.eval_batch_size)

    def student(params):
        return params["student"]

    files = runner.RunFiles(run_dir, config) if run_dir is not None else None
    try:
        best = runner.Best()
        if files is not None:
            state, best = files.restore(state, shardings, int(config.batch_size), keep=student)
        done = int(jax.device_get(state.step))
        batches = (trainer.place(b, mesh) for b in trainer.train_batches(prepared.train, config.batch_size, seed,
                                                                         start=done))
        _, best = runner.run_steps(config, state, step, rng, batches, scores, prepared.primary, total, files,
                                    stop, after_step, keep=student, best=best, name="distill step")
    finally:
        if files is not None:
            files.close()
    return best.metrics, best.step, best.params


def run(config, workdir: str, after_step=None) -> dict:
    """Distils `config.teacher` into a student on `config.task`; writes
    WORKDIR/best/ (the student, a fine-tuned checkpoint) and WORKDIR/results.json
    `{"teacher": {metrics, examples_per_s}, "student": {...}, ...}`.

    Holds WORKDIR/.lock and resumes from WORKDIR/checkpoints; SIGTERM or
    SIGINT saves a checkpoint after the current step and returns
    `{"task", "stopped_at_step"}` (no results.json): rerunning the same
    command finishes the run as if it had never stopped. `after_step(i)`
    runs after each step (tests)."""
    workdir = pathlib.Path(workdir)
    teacher_cfg, teacher_params, meta, head = load_teacher(config)
    tokenizer = trainer.load_tokenizer(config, meta, config.teacher)
    trainer.check_vocab(teacher_cfg, tokenizer, config.teacher)
    prepared = tasks.prepare(config, tokenizer)
    if prepared.head != "classification":
        raise ConfigError(f"distillation supports classification tasks; {prepared.task} is {prepared.head}")
    student_cfg, source, origin = student_init(teacher_cfg, teacher_params, config)
    student_cfg = student_cfg.replace(num_labels=prepared.num_labels)
    loss_cfg = loss_config(config, student_cfg, teacher_cfg)
    seed, mesh = config.seed, trainer.make_mesh(config)
    student_params = initial_params(student_cfg, source, config.max_seq_length, jax.random.PRNGKey(seed + 1), mesh)
    logging.info("student: %d layers, hidden %d, from %s", student_cfg.num_layers, student_cfg.hidden_size, origin)
    loop.prepare_workdir(str(workdir))
    with (
        loop.workdir_lock(str(workdir), enabled=jax.process_index() == 0),
        loop.StopFlag() as stop,
        resume_lib.library_logs_to(str(workdir / resume_lib.ERROR_LOG)),
    ):
        trainer.write_json(workdir / trainer.CONFIG_FILE, config.to_dict())
        teacher_predict = ft_step.make_predict_step(BertForSequenceClassification(teacher_cfg), "classification",
                                                    mesh)
        teacher_dev = models.dev_scores(teacher_predict, teacher_params, prepared, config.eval_batch_size)
        try:
            best, best_step, best_params = train_student(config, prepared, teacher_cfg, teacher_params, student_cfg,
                                                         student_params, loss_cfg, seed, mesh, workdir, stop,
                                                         after_step)
        except runner.Stopped as e:
            loop.say(f"stopped by signal at step {e.step}; checkpoint saved in {workdir}/checkpoints; "
                     "rerun the same command to resume")
            return {"task": prepared.task, "stopped_at_step": e.step}
        head = {"task": prepared.task, "head": prepared.head, "labels": prepared.labels}
        trainer.save_best(workdir / trainer.BEST_DIR, student_cfg, best_params, head, tokenizer)
        results = {
            "task": prepared.task,
            "teacher_checkpoint": meta["source"],
            "teacher": {**teacher_dev, "examples_per_s": throughput(teacher_cfg, teacher_params, config),
                        "num_layers": teacher_cfg.num_layers},
            "student": {**best, "examples_per_s": throughput(student_cfg, best_params, config),
                        "num_layers": student_cfg.num_layers, "best_step": best_step, "init": origin},
            "losses": {**dataclasses.asdict(loss_cfg), "layer_map": list(loss_cfg.layer_map)},
            "total_steps": trainer.num_train_steps(config, len(prepared.train["input_ids"])),
            "max_seq_length": config.max_seq_length,
        }
        trainer.write_json(workdir / trainer.RESULTS_FILE, results)
        return results
