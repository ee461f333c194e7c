"""Held-out evaluation: MLM loss, MLM accuracy, NSP accuracy, perplexity.

`evaluate_params` sums the eval step's counts over batches (exact totals);
`evaluate_workdir` restores a checkpoint of a training workdir onto the
configured mesh (any mesh: the restore is sharded) and evaluates it;
`evaluate_checkpoint` does the same for a model folder (a Hugging Face folder
of any supported family with its MLM head, or a bert-jax model directory);
the `bert-jax evaluate` command prints the result and writes WORKDIR/eval_<step>.json.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from bert_jax import atomic, checkpoints, losses
from bert_jax.config import execution_config, model_config
from bert_jax.errors import CheckpointError, ConfigError, DataError, UserError
from bert_jax.train import mlm_distill, optim, phases, preflight, resume, sharding
from bert_jax.train import state as state_lib
from bert_jax.train import step as step_lib

log = logging.getLogger(__name__)


def to_global(batch: dict[str, np.ndarray], batch_sharding) -> dict[str, jax.Array]:
    """This process's rows of a batch -> global jax.Arrays split over the mesh."""
    return {k: jax.make_array_from_process_local_data(batch_sharding, v) for k, v in batch.items()}


def summarize(sums: dict[str, float]) -> dict[str, float]:
    """Final eval metrics from summed counts: mlm_loss, mlm_accuracy, perplexity,
    loss, [nsp_loss, nsp_accuracy], plus the counts they came from."""
    m = {k: float(v) for k, v in losses.pretraining_metrics(sums).items()}
    m["perplexity"] = math.exp(min(m["mlm_loss"], 700.0))
    m["masked_tokens"] = float(sums["mlm_weight_sum"])
    if "nsp_count" in sums:
        m["examples"] = float(sums["nsp_count"])
    return m


def evaluate_params(
    eval_step: Callable[..., dict], params: Any, source, num_batches: int, batch_sharding
) -> dict[str, float]:
    """Runs up to `num_batches` batches of `source` (fewer if it ends)."""
    totals: dict[str, float] | None = None
    seen = 0
    for _ in range(num_batches):
        try:
            batch = next(source)
        except StopIteration:
            break
        sums = jax.device_get(eval_step(params, to_global(batch, batch_sharding)))
        totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
        seen += 1
    if totals is None:
        raise DataError("the eval data gave no batch; check config.data.eval_files and the batch size")
    out = summarize(totals)
    out["batches"] = seen
    return out


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return ml_collections.ConfigDict(json.load(f))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; is {workdir} a bert-jax pretrain workdir?") from None
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None


def evaluate_workdir(
    config: ml_collections.ConfigDict, workdir: str, step: int | None = None, source_factory=None
) -> dict[str, Any]:
    """Restores step `step` (default: latest) of `workdir` on config.mesh and
    evaluates config.eval_steps batches of config.data.eval_files."""
    model_cfg = model_config(config)
    preflight.check_run(config, model_cfg, phases.resolve_phases(config), splits=("eval",))
    mesh, rules = sharding.make_mesh(config.mesh), sharding.rules_of(config.mesh)
    optimizer = optim.make_optimizer(config.optimizer, config.total_steps)
    ckpt = resume.Checkpointer(os.path.join(workdir, "checkpoints"), keep=0, async_save=False)
    steps = ckpt.all_steps()
    if not steps:
        raise CheckpointError(f"{workdir}/checkpoints holds no checkpoint; train first")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise CheckpointError(f"{workdir}/checkpoints has no step {step}; saved steps: {steps}")
    phase = phases.phase_at(phases.resolve_phases(config), step - 1 if step else 0)
    abstract, shardings = state_lib.abstract_state(
        model_cfg, optimizer, mesh, phase.seq_len, phase.max_predictions, rules
    )
    try:
        restored, _ = ckpt.restore(step, abstract)
    except resume.DamagedCheckpoint as e:
        intact = ckpt.intact_before(step, abstract)
        ckpt.close()
        use = f"step {intact} is intact: pass --step={intact}" if intact is not None else "no earlier step is intact"
        raise CheckpointError(f"checkpoint step {step} is damaged ({e}); {use}") from None
    ckpt.close()
    # The model of the checkpoint's phase (its RoPE base: context extension).
    eval_step = step_lib.make_eval_step(phases.phase_model_config(model_cfg, phase), mesh, shardings.params, rules=rules)
    bsh = sharding.batch_sharding(mesh)
    factory = source_factory or phases.default_source_factory(config, workdir, model_cfg)
    files = phases.phase_files(config, workdir, phase)[1]
    spec = phases.source_spec(config.batch_size, bsh, phase)
    result = evaluate_params(
        eval_step, restored.params, factory(spec, "eval", files, None), config.eval_steps, bsh
    )
    result["step"] = step
    preflight.check_finite_metrics(result, f"{workdir}/checkpoints/{step}")
    return result


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, checkpoint: str, source_factory=None
) -> dict[str, Any]:
    """Evaluates a model folder (`checkpoints.load_model`: Hugging Face BERT /
    RoBERTa / XLM-R / CamemBERT / ALBERT with an MLM head, a bert-jax model
    dir) on config.eval_steps batches of config.data.eval_files, with its own
    tokenizer files unless config.data.vocab_file is set. The pair head is
    scored only when the checkpoint has one."""
    if not config.data.eval_files and not config.data.get("synthetic", False):
        raise ConfigError("--checkpoint needs --config.data.eval_files (held-out shards made with its vocab)")
    loaded_cfg, loaded, meta = checkpoints.load_model(checkpoint)
    has_pair = any(k[0] == "pair" for k in checkpoints.flatten_params(loaded))
    architecture = loaded_cfg.replace(pair_head=loaded_cfg.pair_head if has_pair else "none")
    model_cfg = architecture.with_execution(execution_config(config))
    if not config.data.vocab_file and meta.get("vocab_file"):
        config = ml_collections.ConfigDict(config.to_dict())
        # A Hugging Face folder: the folder itself names its tokenizer files.
        config.data.vocab_file = meta["path"] if meta.get("format") == "hf" else meta["vocab_file"]
    preflight.check_run(config, model_cfg, phases.resolve_phases(config), splits=("eval",))
    mesh, rules = sharding.make_mesh(config.mesh), sharding.rules_of(config.mesh)
    sharding.check_batch_size(int(config.batch_size), mesh, 1)
    params, shardings = mlm_distill.place_teacher(checkpoint, loaded, model_cfg, mesh, rules, what="--checkpoint")
    phase = phases.resolve_phases(config)[0]
    eval_step = step_lib.make_eval_step(model_cfg, mesh, shardings, rules=rules)
    bsh = sharding.batch_sharding(mesh)
    factory = source_factory or phases.default_source_factory(config, "", model_cfg)
    spec = phases.source_spec(config.batch_size, bsh, phase)
    result = evaluate_params(eval_step, params, factory(spec, "eval", config.data.eval_files, None),
                             config.eval_steps, bsh)
    result["step"] = 0
    result["checkpoint"] = str(checkpoint)
    preflight.check_finite_metrics(result, str(checkpoint))
    return result


def write_result(workdir: str, result: dict[str, Any]) -> str:
    """WORKDIR/eval_<step>.json (written to a temp name, then renamed, so a
    failed write never replaces a good file); a non-finite metric is an
    error, never written (JSON has no NaN)."""
    preflight.check_finite_metrics(result, f"step {result['step']}")
    path = os.path.join(workdir, f"eval_{result['step']}.json")
    text = json.dumps(result, indent=1, sort_keys=True, allow_nan=False) + "\n"
    try:
        atomic.write_text(path, text)
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror or e}); free disk space or fix permissions") from None
    return path
