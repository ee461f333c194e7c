"""Every checkpoint format bert-jax reads, and the one it writes.

`load_model(path) -> (ModelConfig, params, meta)` is the one entry point the
consumers (extract-features, finetune, evaluate, init_checkpoint, convert) use.
It takes

* a model checkpoint (what `save_model` / `bert-jax convert` writes):
  `model_config.json`, `params/` (orbax StandardCheckpointer), and when known
  `vocab.txt` and `tokenizer_config.json` (`{"do_lower_case": bool}`);
* a training workdir (`WORKDIR/config.json` + `WORKDIR/checkpoints/<step>/state`)
  or one of its step directories; only `params` is restored;
* a Hugging Face folder of BERT, RoBERTa, XLM-R, CamemBERT or ALBERT
  (`config.json` + `model.safetensors` or `pytorch_model.bin`; the family
  from `model_type`, docs/family.md);
* an original Google TF checkpoint (`bert_model.ckpt` prefix, or the folder
  holding it and `bert_config.json`).

`params` is always the plain (unboxed) tree `module.init(...)["params"]` of
`bert_jax.model`: `bert/...` plus whichever heads exist (`mlm`, `pair`,
`classifier`), as NumPy float32 arrays; the layer layout (unrolled, scanned,
shared) is the one `ModelConfig.scan_layers/share_layers` says.
`meta` is a dict: `format`, `path`, `vocab_file` and `lower_case` (None when
unknown) and, for workdirs, `step`.

The Hugging Face name table (`hf_table`) serves both directions; the export
lives in `bert_jax.convert`. TensorFlow and torch are imported only inside the
functions that read their files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import pathlib
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp

from bert_jax import hf_modernbert
from bert_jax.atomic import atomic_directory  # re-exported: checkpoints.atomic_directory
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.model import BertForPreTraining, ModelConfig, dummy_pretraining_inputs

MODEL_CONFIG = "model_config.json"
PARAMS_DIR = "params"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"
HF_CONFIG = "config.json"
HF_SAFETENSORS = "model.safetensors"
HF_TORCH_BIN = "pytorch_model.bin"
GOOGLE_CONFIG = "bert_config.json"
# In a training workdir: where library output about unreadable checkpoints goes.
ERROR_LOG = "checkpoint-errors.log"


Params = dict[str, Any]


@contextlib.contextmanager
def stderr_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Sends this process's stderr (file descriptor 2, where TensorStore's
    threads print tracebacks when reading a damaged checkpoint) to `path`
    for the block; the one-line error is printed after it. BERT_JAX_TRACEBACK
    set, or no `path`: stderr stays as it is."""
    if path is None or os.environ.get("BERT_JAX_TRACEBACK"):
        yield
        return
    existed = os.path.exists(path)
    try:
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(target, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)
        if not existed and os.path.getsize(path) == 0:
            os.remove(path)  # nothing was printed: no empty log left behind


# --------------------------------------------------------------------------
# Parameter trees


def numpy_params(params: Any) -> Params:
    """Unboxed tree of NumPy float32 arrays; drops a `{"params": ...}` wrapper."""
    params = nn.meta.unbox(params)
    if set(params) == {"params"}:
        params = params["params"]
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)


def flatten_params(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten_params(v, prefix + (k,)))
        else:
            out[prefix + (k,)] = v
    return out


def unflatten_params(flat: Mapping[tuple[str, ...], Any]) -> Params:
    tree: Params = {}
    for path, v in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return tree


def _layers_of(encoder: Mapping, num_layers: int) -> list[Params]:
    """One subtree per layer from any layout: unrolled, scanned or shared."""
    if "layer_0" in encoder:
        return [encoder[f"layer_{i}"] for i in range(num_layers)]
    if "layers" in encoder:
        stacked = encoder["layers"]["layer"]
        return [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(num_layers)]
    if "shared_layer" in encoder:
        return [encoder["shared_layer"]] * num_layers
    raise CheckpointError(f"encoder parameters have none of layer_0, layers, shared_layer: {sorted(encoder)}")


def with_layer_layout(params: Params, cfg: ModelConfig) -> Params:
    """`params` with `bert/encoder` in the layout `cfg` asks for (unrolled
    `layer_{i}`, or scanned `layers/layer` with a leading `[num_layers]` axis),
    from any layout. One shared ALBERT layer expands to identical layers; the
    reverse is refused."""
    encoder = params["bert"]["encoder"]
    layers = _layers_of(encoder, cfg.num_layers)
    if cfg.share_layers:
        if "shared_layer" not in encoder:
            raise CheckpointError("cannot turn separate encoder layers into one shared (ALBERT) layer")
        new_encoder = encoder
    elif cfg.scan_layers:
        new_encoder = {"layers": {"layer": jax.tree.map(lambda *xs: np.stack(xs), *layers)}}
    else:
        new_encoder = {f"layer_{i}": layer for i, layer in enumerate(layers)}
    bert = {**params["bert"], "encoder": new_encoder}
    return {**params, "bert": bert}


def expected_shapes(cfg: ModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Every parameter `BertForPreTraining` (with NSP) and a sequence
    classifier would have under `cfg`, as flat path -> shape."""
    model = BertForPreTraining(cfg.replace(pair_head="nsp" if cfg.pair_head == "none" else cfg.pair_head))
    inputs = dummy_pretraining_inputs(1, 1, 1)
    tree = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.PRNGKey(0), **inputs))["params"])
    shapes = {path: tuple(x.shape) for path, x in flatten_params(tree).items()}
    shapes[("classifier", "kernel")] = (cfg.hidden_size, cfg.num_labels)
    shapes[("classifier", "bias")] = (cfg.num_labels,)
    return shapes


def check_shapes(params: Params, cfg: ModelConfig, source: str) -> None:
    """Raises CheckpointError naming the first parameter whose shape differs
    from what `cfg` needs, or that the model does not have."""
    expected = expected_shapes(cfg)
    for path, x in sorted(flatten_params(params).items()):
        name = "/".join(path)
        if path[0] not in ("bert", "mlm", "pair", "classifier"):
            continue  # task heads of other models (qa_outputs, ...) are not ours to check
        if path not in expected:
            raise CheckpointError(f"{source}: parameter {name} does not exist in a model of this config")
        if tuple(x.shape) != expected[path]:
            raise CheckpointError(
                f"{source}: parameter {name} has shape {tuple(x.shape)} but the config needs "
                f"{expected[path]}; the checkpoint and its config do not match"
            )
    flat = flatten_params(params)
    missing = [p for p in expected if p[0] == "bert" and p[1] != "pooler" and p not in flat]
    if missing:
        raise CheckpointError(f"{source}: parameter {'/'.join(missing[0])} is missing")


# --------------------------------------------------------------------------
# Our model checkpoint


def save_model(
    path: str | os.PathLike,
    model_cfg: ModelConfig,
    params: Any,
    vocab_file: str | os.PathLike | None = None,
    lower_case: bool | None = None,
    overwrite: bool = False,
    extra_files: Mapping[str, str] | None = None,
) -> pathlib.Path:
    """Writes a model checkpoint directory atomically (temp dir, then rename):
    `model_config.json`, `params/`, and the tokenizer's files (`vocab.txt`;
    `vocab.json` + `merges.txt`; a SentencePiece `*.model`) and
    `tokenizer_config.json` when given (`write_tokenizer`), and `extra_files`
    `{name: text}` (a head.json, pruned_heads.json) in the same rename.
    `params` may be boxed or wrapped in `{"params": ...}`."""
    params = numpy_params(params)
    check_shapes(params, model_cfg, str(path))
    if vocab_file and not os.path.isfile(vocab_file):
        raise CheckpointError(f"vocab file {vocab_file} does not exist; pass an existing vocab.txt")
    if vocab_file:
        tokenizer_files(vocab_file)
    with atomic_directory(path, overwrite) as tmp:
        _save_params(tmp / PARAMS_DIR, params)
        _write_json(tmp / MODEL_CONFIG, dataclasses.asdict(model_cfg))
        write_tokenizer(tmp, vocab_file, lower_case)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return pathlib.Path(path)


def write_tokenizer(folder: pathlib.Path, vocab_file: str | os.PathLike | None, lower_case: bool | None) -> None:
    """Puts a tokenizer of any kind into a checkpoint folder being written:
    its files (`copy_tokenizer_files`) and `tokenizer_config.json`
    `{"do_lower_case": ...}`; each only when given. `tokenizer_meta` and
    `tokenization.load_tokenizer(folder)` read them back."""
    if vocab_file:
        copy_tokenizer_files(vocab_file, folder)
    if lower_case is not None:
        _write_json(folder / TOKENIZER_CONFIG, {"do_lower_case": bool(lower_case)})


def _save_params(path: pathlib.Path, params: Params) -> None:
    """Writes `params` with orbax; its write errors (TensorStore reports a
    full disk as ValueError) become OSError for `atomic_directory`, and its
    absl error logs stay off the console unless BERT_JAX_TRACEBACK is set."""
    absl_logger = logging.getLogger("absl")
    quiet = not os.environ.get("BERT_JAX_TRACEBACK")
    level = absl_logger.level
    if quiet:
        absl_logger.setLevel(logging.CRITICAL)
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(path, params)
        checkpointer.wait_until_finished()
    except ValueError as e:
        first = (str(e).strip().splitlines() or ["ValueError"])[0][:200]
        raise OSError(errno.EIO, first) from None
    finally:
        if quiet:
            absl_logger.setLevel(level)


def tokenizer_files(vocab_file: str | os.PathLike) -> list[pathlib.Path]:
    """The files one tokenizer is made of: a WordPiece `vocab.txt`, a
    byte-level BPE `vocab.json` with `merges.txt` beside it, or a
    SentencePiece `*.model`."""
    vocab_file = pathlib.Path(vocab_file)
    files = [vocab_file]
    if vocab_file.suffix == ".json":
        files.append(vocab_file.parent / "merges.txt")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(f"tokenizer file {missing[0]} does not exist; pass an existing vocab file")
    return files


def copy_tokenizer_files(
    vocab_file: str | os.PathLike, folder: pathlib.Path, spm_name: str | None = None
) -> None:
    """Copies `tokenizer_files(vocab_file)` into `folder` as vocab.txt,
    vocab.json + merges.txt, or the SentencePiece model under `spm_name`
    (default its own name)."""
    for f in tokenizer_files(vocab_file):
        if f.suffix == ".model":
            name = spm_name or f.name
        elif f.name == "merges.txt":
            name = f.name
        else:
            name = "vocab.json" if f.suffix == ".json" else VOCAB_FILE
        shutil.copyfile(f, folder / name)


def _write_json(path: pathlib.Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _read_json(path: pathlib.Path) -> dict:
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


def _model_config_from_fields(fields: Mapping, source: pathlib.Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(fields)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{source}: {e}") from None


def _restore_tree(path: pathlib.Path, subtree: str | None = None) -> Params:
    """Restores an orbax pytree (only `subtree` of it, when given) as NumPy."""
    try:
        return _strip_box_values(_orbax_restore(path, subtree))
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:  # orbax reports a missing/corrupt tree as these
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(f"{path} is not a readable orbax checkpoint ({first})") from None


def _orbax_restore(path: pathlib.Path, subtree: str | None) -> Params:
    checkpointer = ocp.PyTreeCheckpointer()
    metadata = checkpointer.metadata(path).item_metadata
    tree = getattr(metadata, "tree", metadata)
    if not tree:
        raise CheckpointError(
            f"{path} is not a readable orbax checkpoint (its array metadata is unreadable or empty); it is damaged"
        )
    if subtree is not None:
        if not isinstance(tree, Mapping) or subtree not in tree:
            raise CheckpointError(f"{path} holds no {subtree!r} entry; found {sorted(tree or {})}")
        tree = {subtree: tree[subtree]}
    item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    restore_args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    args = ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=subtree is not None)
    restored = checkpointer.restore(path, args=args)
    return restored[subtree] if subtree is not None else restored


def _strip_box_values(tree: Any) -> Any:
    """A boxed parameter (`nn.Partitioned`) saves as `{"value": array}`."""
    if isinstance(tree, Mapping):
        if set(tree) == {"value"} and not isinstance(tree["value"], Mapping):
            return np.asarray(tree["value"], np.float32)
        return {k: _strip_box_values(v) for k, v in tree.items()}
    return np.asarray(tree, np.float32)


def tokenizer_meta(folder: pathlib.Path) -> tuple[str | None, bool | None]:
    """(the tokenizer's main file: vocab.txt, vocab.json or a *.model, else None;
    do_lower_case from tokenizer_config.json, else None) of a checkpoint folder."""
    candidates = [folder / VOCAB_FILE, folder / "vocab.json", *sorted(folder.glob("*.model"))]
    vocab = next((c for c in candidates if c.is_file()), None)
    lower_case = None
    if (folder / TOKENIZER_CONFIG).is_file():
        lower_case = _read_json(folder / TOKENIZER_CONFIG).get("do_lower_case")
    return (str(vocab) if vocab else None), lower_case


def _load_ours(folder: pathlib.Path) -> tuple[ModelConfig, Params, dict]:
    cfg = _model_config_from_fields(_read_json(folder / MODEL_CONFIG), folder / MODEL_CONFIG)
    if not (folder / PARAMS_DIR).is_dir():
        raise CheckpointError(f"{folder / PARAMS_DIR} is missing; the checkpoint is incomplete")
    params = _restore_tree(folder / PARAMS_DIR)
    check_shapes(params, cfg, str(folder))
    vocab, lower_case = tokenizer_meta(folder)
    return cfg, params, _meta("bert-jax", folder, vocab, lower_case)


def _meta(fmt: str, path: pathlib.Path, vocab: str | None, lower_case: bool | None, **extra) -> dict:
    return {"format": fmt, "path": str(path), "vocab_file": vocab, "lower_case": lower_case, **extra}


# --------------------------------------------------------------------------
# Training workdirs


def _steps(checkpoints_dir: pathlib.Path) -> list[int]:
    if not checkpoints_dir.is_dir():
        return []
    return sorted(
        int(p.name) for p in checkpoints_dir.iterdir() if p.name.isdigit() and (p / "state").is_dir()
    )


def _load_workdir(workdir: pathlib.Path, step: int | None) -> tuple[ModelConfig, Params, dict]:
    config = _read_json(workdir / HF_CONFIG)
    if not isinstance(config.get("model"), Mapping):
        raise CheckpointError(f"{workdir / HF_CONFIG} has no 'model' section; is this a bert-jax workdir?")
    cfg = _model_config_from_fields(config["model"], workdir / HF_CONFIG)
    steps = _steps(workdir / "checkpoints")
    if not steps:
        raise CheckpointError(
            f"{workdir / 'checkpoints'} holds no saved step yet; train longer or pick another"
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise CheckpointError(f"{workdir / 'checkpoints'} has no step {step}; saved steps: {steps}")
    state_dir = workdir / "checkpoints" / str(step) / "state"
    with stderr_to(workdir / ERROR_LOG):
        try:
            params = _restore_tree(state_dir, subtree="params")
        except CheckpointError as e:
            raise CheckpointError(_damaged_step_message(workdir, step, steps, e)) from None
    check_shapes(params, cfg, str(state_dir))
    data = config.get("data") if isinstance(config.get("data"), Mapping) else {}
    vocab = data.get("vocab_file") or None
    if not (vocab and pathlib.Path(vocab).is_file()):
        vocab = str(workdir / VOCAB_FILE) if (workdir / VOCAB_FILE).is_file() else None
    return cfg, params, _meta("workdir", workdir, vocab, data.get("do_lower_case"), step=step)


def _damaged_step_message(workdir: pathlib.Path, step: int, steps: list[int], error: Exception) -> str:
    """Names a damaged step and the newest earlier one whose params restore."""
    for earlier in reversed([s for s in steps if s < step]):
        try:
            _restore_tree(workdir / "checkpoints" / str(earlier) / "state", subtree="params")
        except CheckpointError:
            continue
        return (
            f"checkpoint step {step} of {workdir} is damaged ({error}); step {earlier} is intact: "
            f"pass the path {workdir / 'checkpoints' / str(earlier)} instead"
        )
    return f"checkpoint step {step} of {workdir} is damaged ({error}); no earlier step is intact"


# --------------------------------------------------------------------------
# Hugging Face / Google name table


@dataclasses.dataclass(frozen=True)
class HFEntry:
    """One tensor: its Hugging Face name (no `bert.` prefix on encoder names),
    our flat path, the transform kind and its shape in the HF layout."""

    hf_name: str
    path: tuple[str, ...]
    kind: str  # copy | T | qkv_kernel | qkv_bias | out_kernel
    hf_shape: tuple[int, ...]
    group: str  # encoder | pooler | mlm | pair | classifier


@dataclasses.dataclass(frozen=True)
class HFFamily:
    """How one family of the BERT family looks in Hugging Face `transformers`."""

    model_type: str  # config.json's model_type
    stem: str  # class-name stem: Bert -> BertModel, BertForMaskedLM, ...
    prefix: str  # the encoder's prefix in state dicts of models with heads
    decoder: str  # the tied MLM decoder (left out of the table; checked equal)
    pretraining: bool  # has a *ForPreTraining class (MLM + NSP/SOP)

    @property
    def architectures(self) -> tuple[str, ...]:
        heads = ("Model", "ForPreTraining", "ForMaskedLM", "ForSequenceClassification")
        return tuple(self.stem + h for h in heads if self.pretraining or h != "ForPreTraining")


# ModelConfig.family -> its Hugging Face form. XLM-R and CamemBERT are RoBERTa
# with a SentencePiece vocabulary: the same tensors under other class names.
HF_FAMILIES = {
    "bert": HFFamily("bert", "Bert", "bert.", "cls.predictions.decoder", True),
    "roberta": HFFamily("roberta", "Roberta", "roberta.", "lm_head.decoder", False),
    "xlmr": HFFamily("xlm-roberta", "XLMRoberta", "roberta.", "lm_head.decoder", False),
    "camembert": HFFamily("camembert", "Camembert", "roberta.", "lm_head.decoder", False),
    "albert": HFFamily("albert", "Albert", "albert.", "predictions.decoder", True),
}
_FAMILY_OF_MODEL_TYPE = {f.model_type: name for name, f in HF_FAMILIES.items()}


class _Table:
    """Builds a name table: `dense`, `layer_norm`, `embedding` append entries."""

    def __init__(self):
        self.entries: list[HFEntry] = []

    def dense(self, hf, path, n_in, n_out, group, kernel="T", bias="copy"):
        self.entries.append(HFEntry(f"{hf}.weight", path + ("kernel",), kernel, (n_out, n_in), group))
        self.entries.append(HFEntry(f"{hf}.bias", path + ("bias",), bias, (n_out,), group))

    def layer_norm(self, hf, path, width, group):
        self.entries.append(HFEntry(f"{hf}.weight", path + ("scale",), "copy", (width,), group))
        self.entries.append(HFEntry(f"{hf}.bias", path + ("bias",), "copy", (width,), group))

    def embeddings(self, cfg: ModelConfig):
        emb = ("bert", "embeddings")
        for name, rows in (
            ("word", cfg.vocab_size),
            ("position", cfg.max_position_embeddings),
            ("token_type", cfg.type_vocab_size),
        ):
            self.entries.append(
                HFEntry(
                    f"embeddings.{name}_embeddings.weight",
                    emb + (f"{name}_embeddings", "embedding"),
                    "copy",
                    (rows, cfg.embed_dim),
                    "encoder",
                )
            )
        self.layer_norm("embeddings.LayerNorm", emb + ("LayerNorm",), cfg.embed_dim, "encoder")

    def layer(self, cfg: ModelConfig, ours: tuple[str, ...], names: Mapping[str, str]):
        """One encoder layer; `names` gives the HF name of each of our parts."""
        H, inter = cfg.hidden_size, cfg.intermediate_size
        for proj in ("query", "key", "value"):
            self.dense(names[proj], ours + ("attention", proj), H, H, "encoder", "qkv_kernel", "qkv_bias")
        self.dense(names["output"], ours + ("attention", "output"), H, H, "encoder", "out_kernel")
        self.layer_norm(names["attention_LayerNorm"], ours + ("attention_LayerNorm",), H, "encoder")
        self.dense(names["intermediate"], ours + ("intermediate",), H, inter, "encoder")
        self.dense(names["ffn_output"], ours + ("output",), inter, H, "encoder")
        self.layer_norm(names["output_LayerNorm"], ours + ("output_LayerNorm",), H, "encoder")


def _bert_layers(table: _Table, cfg: ModelConfig) -> None:
    for i in range(cfg.num_layers):
        hf = f"encoder.layer.{i}"
        names = {p: f"{hf}.attention.self.{p}" for p in ("query", "key", "value")}
        names.update(
            output=f"{hf}.attention.output.dense",
            attention_LayerNorm=f"{hf}.attention.output.LayerNorm",
            intermediate=f"{hf}.intermediate.dense",
            ffn_output=f"{hf}.output.dense",
            output_LayerNorm=f"{hf}.output.LayerNorm",
        )
        table.layer(cfg, ("bert", "encoder", f"layer_{i}"), names)


def _bert_table(cfg: ModelConfig) -> list[HFEntry]:
    H, V = cfg.hidden_size, cfg.vocab_size
    table = _Table()
    table.embeddings(cfg)
    _bert_layers(table, cfg)
    table.dense("pooler.dense", ("bert", "pooler", "dense"), H, H, "pooler")
    table.dense("cls.predictions.transform.dense", ("mlm", "dense"), H, H, "mlm")
    table.layer_norm("cls.predictions.transform.LayerNorm", ("mlm", "LayerNorm"), H, "mlm")
    table.entries.append(HFEntry("cls.predictions.bias", ("mlm", "bias"), "copy", (V,), "mlm"))
    table.dense("cls.seq_relationship", ("pair",), H, 2, "pair")
    table.dense("classifier", ("classifier",), H, cfg.num_labels, "classifier")
    return table.entries


def _roberta_table(cfg: ModelConfig) -> list[HFEntry]:
    """RoBERTa / XLM-R / CamemBERT. The classification head (dense, tanh,
    out_proj on <s>) is our pooler + classifier, so `classifier.dense` is our
    pooler in a sequence classifier (which has no `pooler.dense`)."""
    H, V = cfg.hidden_size, cfg.vocab_size
    table = _Table()
    table.embeddings(cfg)
    _bert_layers(table, cfg)
    table.dense("pooler.dense", ("bert", "pooler", "dense"), H, H, "pooler")
    table.dense("lm_head.dense", ("mlm", "dense"), H, H, "mlm")
    table.layer_norm("lm_head.layer_norm", ("mlm", "LayerNorm"), H, "mlm")
    table.entries.append(HFEntry("lm_head.bias", ("mlm", "bias"), "copy", (V,), "mlm"))
    table.dense("classifier.dense", ("bert", "pooler", "dense"), H, H, "classifier")
    table.dense("classifier.out_proj", ("classifier",), H, cfg.num_labels, "classifier")
    return table.entries


def _albert_table(cfg: ModelConfig) -> list[HFEntry]:
    """ALBERT with one layer group of one layer (every released ALBERT)."""
    H, E, V = cfg.hidden_size, cfg.embed_dim, cfg.vocab_size
    table = _Table()
    table.embeddings(cfg)
    table.dense("encoder.embedding_hidden_mapping_in", ("bert", "embeddings", "projection"), E, H, "encoder")
    hf = "encoder.albert_layer_groups.0.albert_layers.0"
    names = {p: f"{hf}.attention.{p}" for p in ("query", "key", "value")}
    names.update(
        output=f"{hf}.attention.dense",
        attention_LayerNorm=f"{hf}.attention.LayerNorm",
        intermediate=f"{hf}.ffn",
        ffn_output=f"{hf}.ffn_output",
        output_LayerNorm=f"{hf}.full_layer_layer_norm",
    )
    table.layer(cfg, ("bert", "encoder", "shared_layer"), names)
    table.dense("pooler", ("bert", "pooler", "dense"), H, H, "pooler")
    table.dense("predictions.dense", ("mlm", "dense"), H, E, "mlm")
    table.layer_norm("predictions.LayerNorm", ("mlm", "LayerNorm"), E, "mlm")
    table.entries.append(HFEntry("predictions.bias", ("mlm", "bias"), "copy", (V,), "mlm"))
    table.dense("sop_classifier.classifier", ("pair",), H, 2, "pair")
    table.dense("classifier", ("classifier",), H, cfg.num_labels, "classifier")
    return table.entries


def hf_table(cfg: ModelConfig) -> list[HFEntry]:
    """Every tensor of every head of `cfg.family`, in Hugging Face order
    (encoder names without the family's `bert.`/`roberta.`/`albert.` prefix)."""
    if cfg.family == "albert":
        if not cfg.share_layers:
            raise CheckpointError(
                "an ALBERT without cross-layer sharing (model.share_layers=False) has no Hugging Face "
                "layout; set share_layers=True"
            )
        return _albert_table(cfg)
    if cfg.family in ("roberta", "xlmr", "camembert"):
        return _roberta_table(cfg)
    return _bert_table(cfg)


def hf_to_ours(kind: str, x: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """One tensor from the HF (PyTorch `[out, in]`) layout to ours."""
    H, heads, hd = cfg.hidden_size, cfg.num_heads, cfg.head_dim
    x = np.asarray(x, np.float32)
    if kind == "T":
        x = x.T
    elif kind == "qkv_kernel":
        x = x.T.reshape(H, heads, hd)
    elif kind == "qkv_bias":
        x = x.reshape(heads, hd)
    elif kind == "out_kernel":
        x = x.T.reshape(heads, hd, H)
    return np.ascontiguousarray(x)


def ours_to_hf(kind: str, x: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Inverse of `hf_to_ours`."""
    H = cfg.hidden_size
    x = np.asarray(x, np.float32)
    if kind == "T":
        x = x.T
    elif kind in ("qkv_kernel", "out_kernel"):
        x = x.reshape(H, H).T
    elif kind == "qkv_bias":
        x = x.reshape(H)
    return np.ascontiguousarray(x)


_HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",
    "relu": "relu",
}
_REQUIRED_HF_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)


def _supported_architectures() -> str:
    return "; ".join(
        [
            f"model_type {f.model_type!r} with architectures {', '.join(f.architectures)}"
            for f in HF_FAMILIES.values()
        ]
        + [hf_modernbert.SUPPORTED]
    )


def _family_fields(family: str, hf: Mapping, source: str | os.PathLike) -> dict[str, Any]:
    """The ModelConfig fields a family sets beyond BERT's, with its HF defaults."""
    if family in ("roberta", "xlmr", "camembert"):
        pad = 1 if hf.get("pad_token_id") is None else hf["pad_token_id"]
        return dict(
            position_offset=pad + 1,
            pad_token_id=pad,
            type_vocab_size=hf.get("type_vocab_size", 1),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
            pair_head="none",
        )
    if family == "albert":
        groups = (hf.get("num_hidden_groups", 1), hf.get("inner_group_num", 1))
        if groups != (1, 1):
            raise CheckpointError(
                f"{source}: num_hidden_groups={groups[0]}, inner_group_num={groups[1]}; bert-jax shares "
                "one layer across all layers (both 1), as every released ALBERT does"
            )
        return dict(
            embedding_size=hf.get("embedding_size", 128),
            share_layers=True,
            hidden_act=hf.get("hidden_act", "gelu_new"),
            hidden_dropout=hf.get("hidden_dropout_prob", 0.0),
            attention_dropout=hf.get("attention_probs_dropout_prob", 0.0),
            pair_head="sop",
        )
    return {}


def model_config_from_hf(hf: Mapping, source: str | os.PathLike) -> ModelConfig:
    """A Hugging Face `config.json` (BERT, RoBERTa, XLM-R, CamemBERT, ALBERT)
    or Google `bert_config.json` as ModelConfig. Refuses any other
    architecture, naming what it found and what is supported."""
    if hf.get("model_type") == hf_modernbert.MODEL_TYPE:  # fused tensors: its own mapping
        return hf_modernbert.model_config_from_hf(hf, source)
    model_type = hf.get("model_type", "bert")
    family = _FAMILY_OF_MODEL_TYPE.get(model_type)
    known = HF_FAMILIES[family].architectures if family else ()
    archs = [a for a in hf.get("architectures") or [] if a not in known]
    if family is None or archs:
        found = f"model_type={model_type!r}" + (f", architectures={archs}" if archs else "")
        raise CheckpointError(f"{source}: {found} is not supported; supported: {_supported_architectures()}")
    missing = [k for k in _REQUIRED_HF_KEYS if k not in hf]
    if missing:
        raise CheckpointError(
            f"{source}: missing key(s) {missing}; a {model_type} config needs {list(_REQUIRED_HF_KEYS)}"
        )
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"{source}: position_embedding_type={hf['position_embedding_type']!r}; only 'absolute' is supported"
        )
    num_labels = len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels", 2)
    fields = dict(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"],
        hidden_act=hf.get("hidden_act", "gelu"),
        max_position_embeddings=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        initializer_range=hf.get("initializer_range", 0.02),
        pad_token_id=hf.get("pad_token_id") or 0,
        num_labels=num_labels,
        family=family,
    )
    fields.update(_family_fields(family, hf, source))
    act = fields["hidden_act"]
    if act not in _HF_ACTIVATIONS:
        raise CheckpointError(f"{source}: hidden_act={act!r}; supported: {sorted(_HF_ACTIVATIONS)}")
    fields["hidden_act"] = _HF_ACTIVATIONS[act]
    try:
        return ModelConfig(**fields)
    except ConfigError as e:
        raise CheckpointError(f"{source}: {e}") from None


def _canonical_hf_name(name: str, family: HFFamily) -> str:
    """The family's `bert.`/`roberta.`/`albert.` prefix off, old `gamma/beta`
    LayerNorm names to `weight/bias`."""
    name = name.removeprefix(family.prefix)
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    return re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)


# Tensors Hugging Face stores that carry no weights of their own (buffers).
_IGNORED_HF = re.compile(r"^embeddings\.(position_ids|token_type_ids)$")


def params_from_hf_state(
    state: Mapping[str, np.ndarray], cfg: ModelConfig, source: str
) -> tuple[ModelConfig, Params]:
    """Hugging Face state dict (any supported head of `cfg.family`, prefixed or
    not) -> (config with `pair_head` set to what exists, our params: unrolled,
    or one shared layer for ALBERT)."""
    if cfg.family == "modernbert":
        return hf_modernbert.params_from_hf_state(state, cfg, source)
    family = HF_FAMILIES[cfg.family]
    state = {_canonical_hf_name(k, family): v for k, v in state.items()}
    table = hf_table(cfg)
    present = {e.group for e in table if e.hf_name in state}
    if "encoder" not in present:
        raise CheckpointError(
            f"{source}: no {family.model_type} encoder tensors (e.g. embeddings.word_embeddings.weight) "
            f"among {sorted(state)[:5]}...; is this a {family.stem} checkpoint?"
        )
    flat = {}
    for entry in table:
        if entry.group not in present:
            continue
        if entry.hf_name not in state:
            raise CheckpointError(f"{source}: tensor {entry.hf_name} is missing")
        x = state[entry.hf_name]
        if tuple(x.shape) != entry.hf_shape:
            raise CheckpointError(
                f"{source}: tensor {entry.hf_name} has shape {tuple(x.shape)} but the config needs "
                f"{entry.hf_shape}; the weights and config.json do not match"
            )
        flat[entry.path] = hf_to_ours(entry.kind, x, cfg)
    _check_leftovers(state, {e.hf_name for e in table}, flat, family, source)
    pair_head = {"bert": "nsp", "albert": "sop"}.get(cfg.family, "none")
    cfg = cfg.replace(pair_head=pair_head if "pooler" in present else "none")
    return cfg, unflatten_params(flat)


def _check_leftovers(state: Mapping, known: set[str], flat: Mapping, family: HFFamily, source: str) -> None:
    """The tied decoder must equal the word embeddings (and its bias the MLM
    bias); any other tensor the table does not know is refused."""
    tied = {
        f"{family.decoder}.weight": flat[("bert", "embeddings", "word_embeddings", "embedding")],
        f"{family.decoder}.bias": flat.get(("mlm", "bias")),
    }
    for name, ours in tied.items():
        x = state.get(name)
        if x is not None and ours is not None and not np.array_equal(np.asarray(x, np.float32), ours):
            raise CheckpointError(
                f"{source}: {name} differs from the {'word embeddings' if name.endswith('weight') else 'MLM bias'}; "
                "bert-jax ties them (untied MLM decoders are not supported)"
            )
    unknown = sorted(k for k in state if k not in known and k not in tied and not _IGNORED_HF.match(k))
    if unknown:
        raise CheckpointError(
            f"{source}: tensor {unknown[0]} is not a {family.stem} weight this importer knows "
            f"({len(unknown)} unknown in all)"
        )


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({e}); re-download or re-save it"
        ) from None


def _read_torch_bin(path: pathlib.Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"{path} needs PyTorch to read; pip install torch==2.13.0, or save the model as model.safetensors"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch wraps pickle/zip errors in several types
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({e})") from None
    return {k: v.float().numpy() for k, v in state.items()}


def load_hf(folder: str | os.PathLike) -> tuple[ModelConfig, Params, dict]:
    """A Hugging Face folder of any supported family -> (ModelConfig, params, meta)."""
    folder = pathlib.Path(folder)
    if not (folder / HF_CONFIG).is_file():
        raise CheckpointError(f"{folder / HF_CONFIG} is missing; a Hugging Face folder needs config.json")
    cfg = model_config_from_hf(_read_json(folder / HF_CONFIG), folder / HF_CONFIG)
    if (folder / HF_SAFETENSORS).is_file():
        weights = folder / HF_SAFETENSORS
        state = _read_safetensors(weights)
    elif (folder / HF_TORCH_BIN).is_file():
        weights = folder / HF_TORCH_BIN
        state = _read_torch_bin(weights)
    else:
        raise CheckpointError(f"{folder} has config.json but neither {HF_SAFETENSORS} nor {HF_TORCH_BIN}")
    cfg, params = params_from_hf_state(state, cfg, str(weights))
    vocab, lower_case = tokenizer_meta(folder)
    return cfg, params, _meta("hf", folder, vocab, lower_case)


def _google_to_hf_name(name: str) -> str | None:
    """`bert/encoder/layer_0/attention/self/query/kernel` ->
    `encoder.layer.0.attention.self.query.weight`; None for optimizer slots."""
    if name == "global_step" or re.search(r"(adam_[mv]|Adam|Momentum)", name):
        return None
    name = name.removeprefix("bert/")
    name = re.sub(r"layer_(\d+)", r"layer.\1", name)
    name = {
        "cls/predictions/output_bias": "cls/predictions/bias",
        "cls/seq_relationship/output_weights": "cls/seq_relationship/weight",
        "cls/seq_relationship/output_bias": "cls/seq_relationship/bias",
    }.get(name, name)
    name = re.sub(r"_embeddings$", "_embeddings/weight", name)
    name = re.sub(r"/(kernel|gamma)$", "/weight", name)
    name = re.sub(r"/beta$", "/bias", name)
    return name.replace("/", ".")


def _find_google_prefix(path: pathlib.Path) -> pathlib.Path:
    if path.is_dir():
        indexes = sorted(path.glob("*.ckpt*.index")) or sorted(path.glob("*.index"))
        if not indexes:
            raise CheckpointError(f"{path} holds no TF checkpoint (*.ckpt*.index)")
        return indexes[-1].with_suffix("")
    return path


def load_google_tf(path: str | os.PathLike) -> tuple[ModelConfig, Params, dict]:
    """An original Google BERT TF checkpoint (prefix like `.../bert_model.ckpt`,
    or the folder holding it) with `bert_config.json` beside it."""
    path = pathlib.Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / GOOGLE_CONFIG).is_file():
        raise CheckpointError(
            f"{folder / GOOGLE_CONFIG} is missing; the original BERT release ships it beside the checkpoint"
        )
    cfg = model_config_from_hf(_read_json(folder / GOOGLE_CONFIG), folder / GOOGLE_CONFIG)
    prefix = _find_google_prefix(path)
    import tensorflow as tf  # only here: the rest of bert-jax runs without TensorFlow

    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as e:  # TF raises NotFoundError / DataLossError / ValueError
        raise CheckpointError(f"{prefix} is not a readable TF checkpoint ({type(e).__name__})") from None
    state = {}
    for name in reader.get_variable_to_shape_map():
        hf_name = _google_to_hf_name(name)
        if hf_name is not None:
            x = reader.get_tensor(name)
            state[hf_name] = x.T if name.endswith("/kernel") else x
    cfg, params = params_from_hf_state(state, cfg, str(prefix))
    vocab = folder / VOCAB_FILE
    # The original infers casing from the release's folder name (uncased_L-12_H-768_A-12).
    lower_case = True if "uncased" in folder.name else (False if "cased" in folder.name else None)
    return cfg, params, _meta("google-tf", prefix, str(vocab) if vocab.is_file() else None, lower_case)


# --------------------------------------------------------------------------
# The one entry point


def detect_format(path: str | os.PathLike) -> str:
    """One of bert-jax, workdir, step, hf, google-tf; CheckpointError when
    `path` is none of them, saying what was looked for."""
    path = pathlib.Path(path)
    if path.is_dir():
        if (path / MODEL_CONFIG).is_file():
            return "bert-jax"
        if (path / "checkpoints").is_dir() and (path / HF_CONFIG).is_file():
            return "workdir"
        if (path / "state").is_dir() and path.parent.name == "checkpoints" and path.name.isdigit():
            return "step"
        if (path / GOOGLE_CONFIG).is_file():
            return "google-tf"
        if (path / HF_CONFIG).is_file():
            return "hf"
        if list(path.glob("*.index")):
            raise CheckpointError(
                f"{path} holds a TF checkpoint but no {GOOGLE_CONFIG}; put the model's bert_config.json beside it"
            )
        if any((path / w).is_file() for w in (HF_SAFETENSORS, HF_TORCH_BIN)):
            raise CheckpointError(
                f"{path} holds model weights but no config.json; add the model's config.json"
            )
    elif pathlib.Path(f"{path}.index").is_file():
        return "google-tf"
    raise CheckpointError(
        f"{path} is not a checkpoint: expected a bert-jax model dir ({MODEL_CONFIG}), a training workdir "
        f"(config.json + checkpoints/), a Hugging Face folder (config.json + {HF_SAFETENSORS}) or a Google "
        f"TF checkpoint ({GOOGLE_CONFIG} + bert_model.ckpt)"
    )


def load_model(path: str | os.PathLike, step: int | None = None) -> tuple[ModelConfig, Params, dict]:
    """Any checkpoint bert-jax reads -> (ModelConfig, NumPy params, meta).

    `step` picks a workdir's step (default: the latest)."""
    path = pathlib.Path(path)
    fmt = detect_format(path)
    if fmt == "bert-jax":
        return _load_ours(path)
    if fmt == "workdir":
        return _load_workdir(path, step)
    if fmt == "step":
        return _load_workdir(path.parent.parent, int(path.name))
    if fmt == "hf":
        return load_hf(path)
    return load_google_tf(path)
