"""Post-training int8 quantisation of a sequence classifier through Qwix.

Schemes:
* `int8_weights`: every dense kernel int8 with per-output-channel scales,
  activations in float (weight-only, "dynamic" nothing).
* `int8`: the same kernels, and each dense layer's input activation int8
  with one static scale calibrated on example batches (Qwix's static-range
  quantisation: mean over the calibration batches of each batch's absmax of
  the whole input; `Recipe` tunes the statistic, its scope, and which inputs
  stay float).

Attention's activation-by-activation einsums stay float in both schemes. The
embedding tables, not a matmul, are stored int8 with per-row scales and
dequantised to float on load (they are half of a small BERT's bytes).

Checkpoint format (a directory, `save_quantized` / `load_quantized`):
`quantization.json` `{"format": "bert-jax-quantized", "scheme": ..., <other Recipe fields>, "library": "qwix", ...}`,
`model_config.json` (the float model's fields), `params.safetensors` (one
tensor per Qwix parameter leaf, named by its pytree path: `...['kernel'].array.qvalue`
int8, `....scale` float32; embeddings `...['embedding'].qvalue/.scale`), and the
source's tokenizer files of any kind (vocab.txt, a SentencePiece *.model, or
vocab.json + merges.txt) with tokenizer_config.json.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from bert_jax import checkpoints
from bert_jax.compress import models
from bert_jax.compress.extras import QUANT_CONFIG, is_quantized, qwix_missing
from bert_jax.errors import CheckpointError, UserError
from bert_jax.finetune import trainer
from bert_jax.finetune.config import finetune_config
from bert_jax.model import BertForSequenceClassification, ModelConfig

try:
    import qwix
except ImportError as e:  # only the `compress` extra installs it
    raise qwix_missing(e) from None

SCHEMES = ("int8", "int8_weights")
WEIGHTS_FILE = "params.safetensors"
FORMAT = "bert-jax-quantized"
_INIT_SHAPE = (1, 8)  # [batch, seq] for shape tracing; parameter shapes do not depend on it

Params = dict[str, Any]
Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a classifier is quantised (stored in `quantization.json`).

    `scheme`: `int8_weights` (kernels only) or `int8` (kernels and dense
    inputs with one static calibrated scale per input). `act_calibration`:
    Qwix's calibration method of those scales (`absmax`, `absmax,0.9`,
    `minmax`, `rms,4`, ...). `act_scope`: what one calibration batch
    contributes: `tensor`, the statistic of the whole `[batch, seq, features]`
    input; `token`, Qwix's default, the statistic of each token averaged
    over the tokens (which clips every token larger than the average token:
    1.6 points of SST-2 lost, docs/compression.md). Either way the scale is
    the mean over the calibration batches. `float_inputs`: module-path regexes
    (Qwix paths such as `bert/encoder/layer_0/output`) whose input
    activations stay float while their kernels are still int8.
    """

    scheme: str = "int8"
    act_calibration: str = "absmax"
    act_scope: str = "tensor"
    float_inputs: tuple[str, ...] = ()

    def __post_init__(self):
        check_scheme(self.scheme)
        if self.act_scope not in ("tensor", "token"):
            raise UserError(f"act_scope={self.act_scope!r}; expected 'tensor' or 'token'")
        object.__setattr__(self, "float_inputs", tuple(self.float_inputs))

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "float_inputs": list(self.float_inputs)}


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise UserError(f"unknown quantisation scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    return scheme


def as_recipe(recipe: Recipe | str) -> Recipe:
    """A `Recipe`, or a scheme name meaning that scheme's default recipe."""
    return recipe if isinstance(recipe, Recipe) else Recipe(check_scheme(recipe))


def _rules(recipe: Recipe, rule_cls: type = qwix.QuantizationRule, **extra) -> list:
    """Qwix rules, first match wins: the `float_inputs` modules weight-only,
    then every dense layer (dot_general) by the scheme."""
    dense = {"op_names": ("dot_general",), "weight_qtype": jnp.int8,
             # (batch, length) share one static scale so any sequence length runs.
             "act_batch_axes": (0, 1), **extra}
    weight_only = [rule_cls(module_path=p, **dense) for p in recipe.float_inputs]
    act = {}
    if recipe.scheme == "int8":
        act = {"act_qtype": jnp.int8, "act_static_scale": True, "act_calibration_method": recipe.act_calibration}
    return weight_only + [rule_cls(module_path=".*", **dense, **act)]


def quantized_module(cfg: ModelConfig, recipe: Recipe | str) -> nn.Module:
    """`BertForSequenceClassification(cfg)` with Qwix's PTQ interception."""
    return qwix.quantize_model(BertForSequenceClassification(cfg), qwix.PtqProvider(_rules(as_recipe(recipe))))


def _dummy_inputs() -> tuple[jax.Array, jax.Array, jax.Array]:
    ids = jnp.zeros(_INIT_SHAPE, jnp.int32)
    return ids, jnp.ones_like(ids), ids


def abstract_params(cfg: ModelConfig, recipe: Recipe | str) -> Any:
    """The Qwix parameter tree (shapes only; `WithAux` leaves say how each is quantised)."""
    module = quantized_module(cfg, recipe)
    return jax.eval_shape(lambda: nn.meta.unbox(module.init(jax.random.PRNGKey(0), *_dummy_inputs())["params"]))


def calibration_stats(cfg: ModelConfig, params: Params, batches: Iterable[Batch], recipe: Recipe | str = "int8") -> Any:
    """Qwix `quant_stats` over `batches`: per batch, the `act_calibration`
    statistic of each quantised dense input (over `act_scope`), averaged over batches."""
    recipe = as_recipe(recipe)
    # Calibration runs Qwix's QT provider: without channelwise axes an input's
    # statistic covers the whole batch tensor, not each token.
    rules = _rules(recipe, qwix.QtRule, disable_channelwise_axes=recipe.act_scope == "tensor")
    module = qwix.quantize_model(BertForSequenceClassification(cfg), qwix.QtProvider(rules))
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *_dummy_inputs()))
    stats = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables["quant_stats"])

    @jax.jit
    def step(params, stats, input_ids, input_mask, segment_ids):
        _, updated = module.apply(
            {"params": params, "quant_stats": stats}, input_ids, input_mask, segment_ids, mutable=["quant_stats"]
        )
        return updated["quant_stats"]

    n = 0
    for batch in batches:
        stats = step(params, stats, batch["input_ids"], batch["input_mask"], batch["segment_ids"])
        n += 1
    if n == 0:
        raise UserError("int8 needs calibration batches; pass --config.calibration_steps >= 1 with training data")
    return stats


def quantize_params(cfg: ModelConfig, params: Params, recipe: Recipe | str, batches: Iterable[Batch] = ()) -> Any:
    """The Qwix PTQ parameter tree of the float classifier `params`; for
    `int8` the activation scales are calibrated on `batches`."""
    recipe = as_recipe(recipe)
    if "classifier" not in params:
        raise UserError("the model has no classification head (params/classifier); quantise a fine-tuned model")
    params = jax.tree.map(jnp.asarray, params)
    stats = calibration_stats(cfg, params, batches, recipe) if recipe.scheme == "int8" else {}
    return qwix.quantize_params(params, abstract_params(cfg, recipe), stats)


def logits_fn(cfg: ModelConfig, recipe: Recipe | str) -> Callable[..., jax.Array]:
    """Jitted `(qparams, input_ids, input_mask, segment_ids) -> logits [batch, labels]`."""
    module = quantized_module(cfg, recipe)
    return jax.jit(lambda p, i, m, s: module.apply({"params": p}, i, m, s))


# --------------------------------------------------------------------------
# Checkpoint


def _is_embedding(path) -> bool:
    return getattr(path[-1], "key", None) == "embedding"


def _name(path) -> str:
    return jax.tree_util.keystr(path)


def to_tensors(qparams: Any) -> dict[str, np.ndarray]:
    """Flat `{pytree path: array}` of a Qwix tree, embeddings as int8 + row scales."""
    tensors = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(qparams)[0]:
        if _is_embedding(path):
            q = qwix.quantize(jnp.asarray(leaf), jnp.int8, channelwise_axes=(0,))
            tensors[_name(path) + ".qvalue"] = np.asarray(q.qvalue)
            tensors[_name(path) + ".scale"] = np.asarray(q.scale)
        else:
            tensors[_name(path)] = np.asarray(leaf)
    return tensors


def from_tensors(tensors: dict[str, np.ndarray], cfg: ModelConfig, recipe: Recipe | str, source: str) -> Any:
    """Inverse of `to_tensors`, shaped by the abstract Qwix tree of `cfg` under `recipe`."""
    abstract = abstract_params(cfg, recipe)
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    leaves = []
    for path, spec in flat:
        name = _name(path)
        try:
            if _is_embedding(path):
                q = qwix.QArray(jnp.asarray(tensors[name + ".qvalue"]), jnp.asarray(tensors[name + ".scale"]))
                value = qwix.dequantize(q)
            else:
                value = jnp.asarray(tensors[name])
        except KeyError as e:
            raise CheckpointError(f"{source}: tensor {e.args[0]} is missing; re-run bert-jax quantize") from None
        if tuple(value.shape) != tuple(spec.shape):
            raise CheckpointError(f"{source}: tensor {name} has shape {value.shape}, expected {spec.shape}")
        leaves.append(value.astype(spec.dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def float_bytes(params: Params) -> int:
    """Bytes of the float32 parameters in the same file format (safetensors)."""
    flat = {"/".join(p): np.asarray(v, np.float32) for p, v in checkpoints.flatten_params(params).items()}
    return len(safetensors.numpy.save(flat))


def save_quantized(
    path: str | os.PathLike,
    cfg: ModelConfig,
    qparams: Any,
    recipe: Recipe | str,
    vocab_file: str | None = None,
    lower_case: bool | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
) -> int:
    """Writes the quantised checkpoint directory atomically; returns the bytes of
    `params.safetensors`."""
    recipe = as_recipe(recipe)
    with checkpoints.atomic_directory(path, overwrite) as tmp:
        safetensors.numpy.save_file(to_tensors(qparams), tmp / WEIGHTS_FILE)
        info = {"format": FORMAT, **recipe.as_json(), "library": f"qwix {qwix.__version__}", **(extra or {})}
        (tmp / QUANT_CONFIG).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        (tmp / checkpoints.MODEL_CONFIG).write_text(
            json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True) + "\n"
        )
        checkpoints.write_tokenizer(tmp, vocab_file, lower_case)  # any kind: vocab.txt, *.model, BPE
        return (tmp / WEIGHTS_FILE).stat().st_size


def _recipe_of(info: dict, source: pathlib.Path) -> Recipe:
    if info.get("format") != FORMAT or "scheme" not in info:
        raise CheckpointError(f"{source / QUANT_CONFIG} is not a {FORMAT} description; re-run bert-jax quantize")
    # Checkpoints written before these fields existed: Qwix's per-token absmax, every input int8.
    return Recipe(info["scheme"], info.get("act_calibration", "absmax"), info.get("act_scope", "token"),
                  tuple(info.get("float_inputs", ())))


def load_quantized(path: str | os.PathLike) -> tuple[ModelConfig, Any, Recipe, dict]:
    """(config, Qwix params, recipe, meta) of a `save_quantized` directory."""
    path = pathlib.Path(path)
    if not is_quantized(path):
        raise CheckpointError(f"{path} has no {QUANT_CONFIG}; it is not a quantised checkpoint")
    recipe = _recipe_of(json.loads((path / QUANT_CONFIG).read_text()), path)
    cfg = ModelConfig.from_dict(json.loads((path / checkpoints.MODEL_CONFIG).read_text()))
    tensors = safetensors.numpy.load_file(path / WEIGHTS_FILE)
    qparams = from_tensors(tensors, cfg, recipe, str(path))
    vocab, lower_case = checkpoints.tokenizer_meta(path)
    meta = {"format": FORMAT, "path": str(path), "vocab_file": vocab, "lower_case": lower_case,
            "scheme": recipe.scheme}
    return cfg, qparams, recipe, meta


def restore_for_predict(path: str | os.PathLike) -> trainer.Restored | None:
    """finetune's predict mode on a quantised checkpoint (`bert-jax quantize`'s
    output, with its head.json): the Qwix model and its parameters as
    restored from disk; None when `path` is not a quantised checkpoint."""
    path = pathlib.Path(path)
    if not is_quantized(path):
        return None
    head = trainer.read_head(path)
    if head["head"] != "classification":
        raise CheckpointError(f"{path}: a quantised {head['head']!r} head; quantize handles sequence classifiers only")
    cfg, qparams, recipe, meta = load_quantized(path)
    return trainer.Restored(cfg, quantized_module(cfg, recipe), qparams, meta, head)


# --------------------------------------------------------------------------
# The job


def run(config, workdir: str, output: str, overwrite: bool = False) -> dict:
    """Quantises a fine-tuned/distilled classifier as `config`
    (`compress.config.quantize_config`) says, saves it to `output`, and
    writes `output/results.json` `{"float": {...}, "quantized": {...}}`, each
    with the dev metrics, `bytes` (parameter file size) and `examples_per_s`
    (batch 32, the task's sequence length, median). The quantised model is
    evaluated as restored from disk. `act_calibration`, `act_scope`,
    `float_inputs` (None: the defaults of `Recipe`) tune `int8`."""
    scheme, calibration_steps = config.scheme, int(config.calibration_steps)
    data_dir, max_seq_length = config.data_dir or None, config.max_seq_length
    batch_size, throughput_runs = int(config.batch_size), int(config.throughput_runs)
    act_calibration, act_scope = config.act_calibration, config.act_scope
    float_inputs = None if config.float_inputs is None else tuple(config.float_inputs)
    recipe = as_recipe(scheme)
    overrides = {"act_calibration": act_calibration, "act_scope": act_scope, "float_inputs": float_inputs}
    recipe = dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    if calibration_steps < (1 if recipe.scheme == "int8" else 0):
        raise UserError(f"--config.calibration_steps={calibration_steps}; int8 needs at least 1 batch")
    cfg, params, meta, head = models.load_finetuned_classifier(workdir)
    task, data_dir, seq_len = models.task_settings(workdir, head, data_dir, max_seq_length)
    tokenizer = trainer.load_tokenizer(finetune_config(task), meta, meta["source"])
    trainer.check_vocab(cfg, tokenizer, meta["source"])
    prepared = models.prepare_task(task, data_dir, seq_len, tokenizer, calibration_steps * batch_size)
    calibration = itertools.islice(trainer.train_batches(prepared.train, batch_size, seed=0), calibration_steps)
    qparams = quantize_params(cfg, params, recipe, calibration)
    nbytes = save_quantized(output, cfg, qparams, recipe, tokenizer.vocab_file, tokenizer.lower_case,
                            extra={"source": meta["source"], "calibration_steps": calibration_steps},
                            overwrite=overwrite)
    if head is not None:
        trainer.write_json(pathlib.Path(output) / trainer.HEAD_FILE, head)
    models.write_run_config(output, workdir, task, data_dir, seq_len, **recipe.as_json(),
                            calibration_steps=calibration_steps, batch_size=batch_size)
    cfg, restored, recipe, _ = load_quantized(output)
    float_fn, quant_fn = models.classifier_logits_fn(cfg), logits_fn(cfg, recipe)

    def report(fn, p, nbytes):
        return {**models.dev_scores(models.batch_fn(fn), p, prepared), "bytes": int(nbytes),
                "examples_per_s": models.examples_per_second(fn, p, cfg.vocab_size, seq_len, 32, throughput_runs)}

    results = {
        "task": task, **recipe.as_json(), "source": meta["source"], "max_seq_length": seq_len,
        "calibration_steps": calibration_steps, "library": f"qwix {qwix.__version__}",
        "float": report(float_fn, jax.tree.map(jnp.asarray, params), float_bytes(params)),
        "quantized": report(quant_fn, restored, nbytes),
    }
    results["size_ratio"] = results["quantized"]["bytes"] / results["float"]["bytes"]
    trainer.write_json(pathlib.Path(output) / "results.json", results)
    return results
