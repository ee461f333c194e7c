"""Hugging Face checkpoints of the BERT family (BERT, RoBERTa, XLM-R,
CamemBERT, ALBERT; ModernBERT through `hf_modernbert`): the name table that
serves both directions (the export is `bert_jax.convert`), config.json to
ModelConfig, and reading a folder's safetensors or PyTorch weights. torch is
imported only inside the function that reads its files."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from bert_jax.checkpoints import hf_modernbert
from bert_jax.checkpoints.files import (
    HF_CONFIG,
    HF_SAFETENSORS,
    HF_TORCH_BIN,
    checkpoint_meta,
    read_json,
    tokenizer_meta,
)
from bert_jax.checkpoints.params import Params, unflatten_params
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.model import ModelConfig


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

    def layer(self, cfg: ModelConfig, ours: tuple[str, ...], hf: str, albert: bool):
        """One encoder layer at HF prefix `hf`, its parts named as `_LAYER_PARTS`."""
        H, inter = cfg.hidden_size, cfg.intermediate_size
        names = {part: f"{hf}.{a if albert else b}" for part, b, a in _LAYER_PARTS}
        for proj in ("query", "key", "value"):
            self.dense(names[proj], ours + ("attention", proj), H, H, "encoder", "qkv_kernel", "qkv_bias")
        self.dense(names["output"], ours + ("attention", "output"), H, H, "encoder", "out_kernel")
        self.layer_norm(names["attention_LayerNorm"], ours + ("attention_LayerNorm",), H, "encoder")
        self.dense(names["intermediate"], ours + ("intermediate",), H, inter, "encoder")
        self.dense(names["ffn_output"], ours + ("output",), inter, H, "encoder")
        self.layer_norm(names["output_LayerNorm"], ours + ("output_LayerNorm",), H, "encoder")

    def mlm(self, hf: str, dense: str, layer_norm: str, cfg: ModelConfig, width: int):
        """The MLM head under HF prefix `hf`: its transform (dense H -> `width`,
        LayerNorm) and its output bias `[V]`; the decoder is the tied word
        embedding, left out."""
        self.dense(f"{hf}.{dense}", ("mlm", "dense"), cfg.hidden_size, width, "mlm")
        self.layer_norm(f"{hf}.{layer_norm}", ("mlm", "LayerNorm"), width, "mlm")
        self.entries.append(HFEntry(f"{hf}.bias", ("mlm", "bias"), "copy", (cfg.vocab_size,), "mlm"))


# One encoder layer's parts: ours, its HF name in a BERT/RoBERTa layer, in ALBERT's shared layer.
_LAYER_PARTS = (
    ("query", "attention.self.query", "attention.query"),
    ("key", "attention.self.key", "attention.key"),
    ("value", "attention.self.value", "attention.value"),
    ("output", "attention.output.dense", "attention.dense"),
    ("attention_LayerNorm", "attention.output.LayerNorm", "attention.LayerNorm"),
    ("intermediate", "intermediate.dense", "ffn"),
    ("ffn_output", "output.dense", "ffn_output"),
    ("output_LayerNorm", "output.LayerNorm", "full_layer_layer_norm"),
)


def _bert_encoder(cfg: ModelConfig) -> _Table:
    """The embeddings, every layer and the pooler of BERT and RoBERTa."""
    table = _Table()
    table.embeddings(cfg)
    for i in range(cfg.num_layers):
        table.layer(cfg, ("bert", "encoder", f"layer_{i}"), f"encoder.layer.{i}", albert=False)
    H = cfg.hidden_size
    table.dense("pooler.dense", ("bert", "pooler", "dense"), H, H, "pooler")
    return table


def _bert_table(cfg: ModelConfig) -> list[HFEntry]:
    H = cfg.hidden_size
    table = _bert_encoder(cfg)
    table.mlm("cls.predictions", "transform.dense", "transform.LayerNorm", cfg, H)
    table.dense("cls.seq_relationship", ("pair",), H, 2, "pair")
    table.dense("classifier", ("classifier",), H, cfg.num_labels, "classifier")
    return table.entries


def _roberta_table(cfg: ModelConfig) -> list[HFEntry]:
    """RoBERTa / XLM-R / CamemBERT. The classification head (dense, tanh,
    out_proj on <s>) is our pooler + classifier, so `classifier.dense` is our
    pooler in a sequence classifier (which has no `pooler.dense`)."""
    H = cfg.hidden_size
    table = _bert_encoder(cfg)
    table.mlm("lm_head", "dense", "layer_norm", cfg, H)
    table.dense("classifier.dense", ("bert", "pooler", "dense"), H, H, "classifier")
    table.dense("classifier.out_proj", ("classifier",), H, cfg.num_labels, "classifier")
    return table.entries


def _albert_table(cfg: ModelConfig) -> list[HFEntry]:
    """ALBERT with one layer group of one layer (every released ALBERT)."""
    H, E = cfg.hidden_size, cfg.embed_dim
    table = _Table()
    table.embeddings(cfg)
    table.dense("encoder.embedding_hidden_mapping_in", ("bert", "embeddings", "projection"), E, H, "encoder")
    hf = "encoder.albert_layer_groups.0.albert_layers.0"
    table.layer(cfg, ("bert", "encoder", "shared_layer"), hf, albert=True)
    table.dense("pooler", ("bert", "pooler", "dense"), H, H, "pooler")
    table.mlm("predictions", "dense", "LayerNorm", cfg, E)
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
_REQUIRED_HF_KEYS = tuple(hf_modernbert.SIZE_KEYS)


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
    fields = dict(
        **hf_modernbert.shared_config_fields(hf),
        hidden_act=hf.get("hidden_act", "gelu"),
        max_position_embeddings=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
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
    cfg = model_config_from_hf(read_json(folder / HF_CONFIG), folder / HF_CONFIG)
    if (folder / HF_SAFETENSORS).is_file():
        weights = folder / HF_SAFETENSORS
        state = _read_safetensors(weights)
    elif (folder / HF_TORCH_BIN).is_file():
        weights = folder / HF_TORCH_BIN
        state = _read_torch_bin(weights)
    else:
        raise CheckpointError(f"{folder} has config.json but neither {HF_SAFETENSORS} nor {HF_TORCH_BIN}")
    cfg, params = params_from_hf_state(state, cfg, str(weights))
    vocab, lower_case = tokenizer_meta(folder, cfg.family)
    return cfg, params, checkpoint_meta("hf", folder, vocab, lower_case)
