"""ModernBERT in Hugging Face `transformers` (`ModernBertModel`,
`ModernBertForMaskedLM`) <-> bert-jax's one encoder, both ways.

The BERT-family tables in `bert_jax.checkpoints.hf` map one HF tensor to one of
ours; ModernBERT fuses tensors we keep apart (`Wqkv` is query, key and value;
`Wi` is the GeGLU input and gate halves), so its mapping lives here, as
functions on flat parameter paths. `bert_jax.checkpoints.load_hf` and
`bert_jax.convert` call in when `model_type` / `ModelConfig.family` is
`modernbert`. No file I/O here: state dicts and configs in, the same out.

transformers' layout (names without the `model.` prefix of heads' models):
`embeddings.tok_embeddings`, `embeddings.norm`; per layer `attn_norm` (none in
layer 0), `attn.Wqkv [3H, H]` (rows: query, key, value; heads inside),
`attn.Wo`, `mlp_norm`, `mlp.Wi [2I, H]` (rows: input, gate), `mlp.Wo`;
`final_norm`; MLM head `head.dense`, `head.norm`, `decoder` (tied to the
token embeddings, with a bias). The sequence and token classifiers have the
same `head` (ModernBertPredictionHead: our `bert/pooler`, `ModelConfig.pooler
== "head"`) and a `classifier` [num_labels, H] with a bias; which tokens the
sequence classifier pools is config.json's `classifier_pooling`
(`ModelConfig.pooling`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from bert_jax.checkpoints.params import flatten_params, unflatten_params
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.model import ModelConfig, modernbert_fields

MODEL_TYPE = "modernbert"
ARCHITECTURES = (
    "ModernBertModel",
    "ModernBertForMaskedLM",
    "ModernBertForSequenceClassification",
    "ModernBertForTokenClassification",
)
_CLASSIFIER = "ModernBertForSequenceClassification"
PREFIX = "model."
SUPPORTED = f"model_type {MODEL_TYPE!r} with architectures {', '.join(ARCHITECTURES)}"

_ACTIVATIONS = {"gelu": "gelu", "gelu_python": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new"}
_HF_ACTIVATION = {"gelu": "gelu", "gelu_new": "gelu_pytorch_tanh", "relu": "relu"}
# The sizes every Hugging Face encoder's config.json (BERT's family, ModernBERT) names alike, all
# required: config.json key -> ModelConfig field.
SIZE_KEYS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
}
# Tensors transformers keeps that carry no weights of their own.
_BUFFERS = ("rotary_emb.inv_freq",)

Flat = dict[tuple[str, ...], np.ndarray]


# --------------------------------------------------------------------------
# config.json


def shared_config_fields(hf: Mapping) -> dict[str, Any]:
    """The ModelConfig fields that every Hugging Face encoder's config.json
    (BERT's family here and in `hf`, ModernBERT) spells alike: the sizes of
    `SIZE_KEYS`, the initializer range, the padding id and the label count."""
    return dict(
        {field: hf[key] for key, field in SIZE_KEYS.items()},
        initializer_range=hf.get("initializer_range", 0.02),
        pad_token_id=hf.get("pad_token_id") or 0,
        num_labels=len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels", 2),
    )


def model_config_from_hf(hf: Mapping, source: str | os.PathLike) -> ModelConfig:
    """A ModernBERT `config.json` as ModelConfig; refuses settings the one
    encoder does not build (mixed bias flags, another head activation,
    RoPE scaling, another architecture), naming the key."""
    archs = [a for a in hf.get("architectures") or [] if a not in ARCHITECTURES]
    if archs:
        raise CheckpointError(
            f"{source}: model_type='modernbert', architectures={archs} is not supported; supported: "
            f"{', '.join(ARCHITECTURES)}"
        )
    missing = [k for k in SIZE_KEYS if k not in hf]
    if missing:
        raise CheckpointError(f"{source}: missing key(s) {missing}; a modernbert config needs {list(SIZE_KEYS)}")
    biases = {k: bool(hf.get(k, False)) for k in ("attention_bias", "mlp_bias", "classifier_bias")}
    if len(set(biases.values())) > 1:
        raise CheckpointError(
            f"{source}: {biases}; bert-jax has one model.linear_bias for attention, feed-forward and MLM "
            "head: these must be equal"
        )
    act = hf.get("hidden_activation", "gelu")
    if act not in _ACTIVATIONS or hf.get("classifier_activation", act) != act:
        raise CheckpointError(
            f"{source}: hidden_activation={act!r}, classifier_activation={hf.get('classifier_activation')!r}; "
            f"supported: one of {sorted(_ACTIVATIONS)} for both"
        )
    if hf.get("rope_scaling"):
        raise CheckpointError(f"{source}: rope_scaling={hf['rope_scaling']!r}; only plain RoPE is supported")
    if hf.get("decoder_bias", True) is not True:
        raise CheckpointError(f"{source}: decoder_bias={hf['decoder_bias']!r}; bert-jax's MLM decoder has a bias")
    global_theta = float(hf.get("global_rope_theta", 160000.0))
    local_theta = hf.get("local_rope_theta", 10000.0)
    pooling = hf.get("classifier_pooling", "cls")
    if pooling not in ("cls", "mean"):
        raise CheckpointError(f"{source}: classifier_pooling={pooling!r}; supported: 'cls', 'mean'")
    fields = modernbert_fields(
        **shared_config_fields(hf),
        max_position_embeddings=hf.get("max_position_embeddings", 8192),
        hidden_dropout=float(hf.get("mlp_dropout", 0.0)),
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        layer_norm_eps=hf.get("norm_eps", 1e-5),
        hidden_act=_ACTIVATIONS[act],
        norm_bias=bool(hf.get("norm_bias", False)),
        linear_bias=biases["attention_bias"],
        global_rope_theta=global_theta,
        local_rope_theta=global_theta if local_theta is None else float(local_theta),
        local_attention=hf.get("local_attention", 128),
        global_attn_every_n_layers=hf.get("global_attn_every_n_layers", 3),
        pooling=pooling,
    )
    try:
        return ModelConfig(**fields)
    except ConfigError as e:
        raise CheckpointError(f"{source}: {e}") from None


# The ModelConfig fields transformers' ModernBERT fixes (it has no switch for them).
_FIXED = ("norm_position", "feed_forward", "position_embedding", "type_vocab_size", "final_norm")


def check_exportable(cfg: ModelConfig) -> None:
    """Refuses a config transformers' ModernBERT cannot express."""
    want = {k: v for k, v in modernbert_fields().items() if k in _FIXED}
    differ = {k: getattr(cfg, k) for k, v in want.items() if getattr(cfg, k) != v}
    if cfg.embedding_size or cfg.heads_per_layer or cfg.local_attention == 0:
        differ.update(
            embedding_size=cfg.embedding_size, heads_per_layer=cfg.heads_per_layer, local_attention=cfg.local_attention
        )
        want.update(embedding_size=0, heads_per_layer=None, local_attention="> 0")
    if differ:
        raise CheckpointError(
            f"model.family='modernbert' exports to transformers' ModernBERT only with its architecture; this "
            f"model has {differ}, transformers' needs {want}"
        )
    if not 0 <= cfg.pad_token_id < cfg.vocab_size:
        # transformers' ModernBERT makes it the padding row of its embedding table.
        raise CheckpointError(
            f"model.pad_token_id={cfg.pad_token_id} is not an id of model.vocab_size={cfg.vocab_size}; "
            "transformers' ModernBERT needs its padding id in the vocabulary: set pad_token_id in the "
            "checkpoint's model_config.json to the tokenizer's padding id (pre-train with "
            "--config.model.pad_token_id=ID when model.vocab_size is overridden)"
        )


def hf_config(cfg: ModelConfig, architecture: str) -> dict[str, Any]:
    """`config.json` for transformers' `ModernBertConfig`."""
    check_exportable(cfg)
    config = {
        "architectures": [architecture],
        "model_type": MODEL_TYPE,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "hidden_activation": _HF_ACTIVATION[cfg.hidden_act],
        "classifier_activation": _HF_ACTIVATION[cfg.hidden_act],
        "max_position_embeddings": cfg.max_position_embeddings,
        "initializer_range": cfg.initializer_range,
        "norm_eps": cfg.layer_norm_eps,
        "norm_bias": cfg.norm_bias,
        "attention_bias": cfg.linear_bias,
        "mlp_bias": cfg.linear_bias,
        "classifier_bias": cfg.linear_bias,
        "decoder_bias": True,
        "tie_word_embeddings": True,
        "attention_dropout": cfg.attention_dropout,
        "mlp_dropout": cfg.hidden_dropout,
        "embedding_dropout": cfg.hidden_dropout,
        "global_rope_theta": cfg.global_rope_theta,
        "local_rope_theta": cfg.local_rope_theta,
        "local_attention": cfg.local_attention,
        "global_attn_every_n_layers": cfg.global_attn_every_n_layers,
        "pad_token_id": cfg.pad_token_id,
        "classifier_pooling": cfg.pooling,
        "classifier_dropout": cfg.hidden_dropout,
        "torch_dtype": "float32",
    }
    if architecture == _CLASSIFIER:
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        config["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
    return config


# --------------------------------------------------------------------------
# Tensors


def _layer_pairs(cfg: ModelConfig, i: int) -> list[tuple[str, tuple[str, ...], str]]:
    """(HF name, our path, kind) of the one-to-one tensors of layer `i`;
    Wqkv and Wi (fused) are handled apart."""
    ours = ("bert", "encoder", f"layer_{i}")
    hf = f"layers.{i}"
    pairs = []
    if i > 0:
        pairs += _norm(cfg, f"{hf}.attn_norm", ours + ("attention_LayerNorm",))
    pairs.append((f"{hf}.attn.Wo.weight", ours + ("attention", "output", "kernel"), "out_kernel"))
    if cfg.linear_bias:
        pairs.append((f"{hf}.attn.Wo.bias", ours + ("attention", "output", "bias"), "copy"))
    pairs += _norm(cfg, f"{hf}.mlp_norm", ours + ("output_LayerNorm",))
    pairs.append((f"{hf}.mlp.Wo.weight", ours + ("output", "kernel"), "T"))
    if cfg.linear_bias:
        pairs.append((f"{hf}.mlp.Wo.bias", ours + ("output", "bias"), "copy"))
    return pairs


def _norm(cfg: ModelConfig, hf: str, ours: tuple[str, ...]) -> list[tuple[str, tuple[str, ...], str]]:
    pairs = [(f"{hf}.weight", ours + ("scale",), "copy")]
    if cfg.norm_bias:
        pairs.append((f"{hf}.bias", ours + ("bias",), "copy"))
    return pairs


def _encoder_pairs(cfg: ModelConfig) -> list[tuple[str, tuple[str, ...], str]]:
    pairs = [("embeddings.tok_embeddings.weight", ("bert", "embeddings", "word_embeddings", "embedding"), "copy")]
    pairs += _norm(cfg, "embeddings.norm", ("bert", "embeddings", "LayerNorm"))
    for i in range(cfg.num_layers):
        pairs += _layer_pairs(cfg, i)
    pairs += _norm(cfg, "final_norm", ("bert", "final_LayerNorm"))
    return pairs


def _prediction_head_pairs(cfg: ModelConfig, ours: tuple[str, ...]) -> list[tuple[str, tuple[str, ...], str]]:
    """`head` (ModernBertPredictionHead: dense, activation, norm) as our `ours` module."""
    pairs = [("head.dense.weight", ours + ("dense", "kernel"), "T")]
    if cfg.linear_bias:
        pairs.append(("head.dense.bias", ours + ("dense", "bias"), "copy"))
    return pairs + _norm(cfg, "head.norm", ours + ("LayerNorm",))


def _head_pairs(cfg: ModelConfig) -> list[tuple[str, tuple[str, ...], str]]:
    """The MLM head: `head` as our `mlm` transform, the decoder's bias."""
    return _prediction_head_pairs(cfg, ("mlm",)) + [("decoder.bias", ("mlm", "bias"), "copy")]


def _classifier_pairs(cfg: ModelConfig) -> list[tuple[str, tuple[str, ...], str]]:
    """A sequence / token classifier: `head` as our pooler, then `classifier`."""
    return _prediction_head_pairs(cfg, ("bert", "pooler")) + [
        ("classifier.weight", ("classifier", "kernel"), "T"),
        ("classifier.bias", ("classifier", "bias"), "copy"),
    ]


def _to_ours(kind: str, x: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if kind == "T":
        x = x.T
    elif kind == "out_kernel":
        x = x.T.reshape(cfg.num_heads, cfg.head_dim, cfg.hidden_size)
    return np.ascontiguousarray(x)


def _to_hf(kind: str, x: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if kind == "T":
        x = x.T
    elif kind == "out_kernel":
        x = x.reshape(cfg.hidden_size, cfg.hidden_size).T
    return np.ascontiguousarray(x)


def _split_fused(state: Mapping[str, np.ndarray], cfg: ModelConfig, i: int, flat: Flat, source: str) -> None:
    """Layer `i`'s `Wqkv` -> query/key/value `[H, heads, head_dim]` and
    `Wi` -> intermediate (input) and gate `[H, I]`, biases alike."""
    H, heads, hd, inter = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.intermediate_size
    ours = ("bert", "encoder", f"layer_{i}")
    qkv = _get(state, f"layers.{i}.attn.Wqkv.weight", (3 * H, H), source)
    wi = _get(state, f"layers.{i}.mlp.Wi.weight", (2 * inter, H), source)
    for j, name in enumerate(("query", "key", "value")):
        flat[ours + ("attention", name, "kernel")] = np.ascontiguousarray(qkv[j * H : (j + 1) * H].T.reshape(H, heads, hd))
    flat[ours + ("intermediate", "kernel")] = np.ascontiguousarray(wi[:inter].T)
    flat[ours + ("gate", "kernel")] = np.ascontiguousarray(wi[inter:].T)
    if cfg.linear_bias:
        qkv_b = _get(state, f"layers.{i}.attn.Wqkv.bias", (3 * H,), source)
        wi_b = _get(state, f"layers.{i}.mlp.Wi.bias", (2 * inter,), source)
        for j, name in enumerate(("query", "key", "value")):
            flat[ours + ("attention", name, "bias")] = qkv_b[j * H : (j + 1) * H].reshape(heads, hd)
        flat[ours + ("intermediate", "bias")] = wi_b[:inter].copy()
        flat[ours + ("gate", "bias")] = wi_b[inter:].copy()


def _fused_names(cfg: ModelConfig) -> set[str]:
    names = set()
    for i in range(cfg.num_layers):
        for fused in ("attn.Wqkv", "mlp.Wi"):
            names.add(f"layers.{i}.{fused}.weight")
            if cfg.linear_bias:
                names.add(f"layers.{i}.{fused}.bias")
    return names


def _get(state: Mapping[str, np.ndarray], name: str, shape: tuple[int, ...], source: str) -> np.ndarray:
    if name not in state:
        raise CheckpointError(f"{source}: tensor {name} is missing")
    x = np.asarray(state[name], np.float32)
    if tuple(x.shape) != shape:
        raise CheckpointError(
            f"{source}: tensor {name} has shape {tuple(x.shape)} but the config needs {shape}; "
            "the weights and config.json do not match"
        )
    return x


def _expected_shape(kind: str, ours_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The HF shape of a one-to-one tensor whose shape ours is `ours_shape`."""
    if kind == "T":
        return ours_shape[::-1]
    if kind == "out_kernel":
        return (ours_shape[2], ours_shape[0] * ours_shape[1])
    return ours_shape


def _our_shape(path: tuple[str, ...], cfg: ModelConfig) -> tuple[int, ...]:
    """The shape of one of our one-to-one ModernBERT tensors."""
    H, V, inter = cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size
    if path[0] == "classifier":
        return (H, cfg.num_labels) if path[-1] == "kernel" else (cfg.num_labels,)
    if path[-1] == "embedding":
        return (V, H)
    if path == ("mlm", "bias"):
        return (V,)
    if path[-2:] == ("output", "kernel") and "attention" in path:
        return (cfg.num_heads, cfg.head_dim, H)
    if path[-2:] == ("output", "kernel"):
        return (inter, H)
    if path[-1] == "kernel":
        return (H, H)
    return (H,)


def params_from_hf_state(
    state: Mapping[str, np.ndarray], cfg: ModelConfig, source: str
) -> tuple[ModelConfig, dict[str, Any]]:
    """A state dict of one of ARCHITECTURES -> (config, our unrolled params:
    `bert/...`; `mlm` when the MLM head is there; `bert/pooler` and
    `classifier` for a classifier). The decoder must equal the token
    embeddings (tied); any tensor not mapped is refused by name."""
    state = {k.removeprefix(PREFIX): v for k, v in state.items()}
    if "embeddings.tok_embeddings.weight" not in state:
        raise CheckpointError(
            f"{source}: no ModernBERT encoder tensors (embeddings.tok_embeddings.weight) among "
            f"{sorted(state)[:5]}...; is this a ModernBERT checkpoint?"
        )
    pairs = _encoder_pairs(cfg)
    if "classifier.weight" in state:
        pairs += _classifier_pairs(cfg)
    elif "head.dense.weight" in state:
        pairs += _head_pairs(cfg)
    flat: Flat = {}
    for name, path, kind in pairs:
        flat[path] = _to_ours(kind, _get(state, name, _expected_shape(kind, _our_shape(path, cfg)), source), cfg)
    for i in range(cfg.num_layers):
        _split_fused(state, cfg, i, flat, source)
    decoder = state.get("decoder.weight")
    embeddings = flat[("bert", "embeddings", "word_embeddings", "embedding")]
    if decoder is not None and not np.array_equal(np.asarray(decoder, np.float32), embeddings):
        raise CheckpointError(
            f"{source}: decoder.weight differs from the token embeddings; bert-jax ties them "
            "(untied MLM decoders are not supported)"
        )
    known = {name for name, _, _ in pairs} | _fused_names(cfg) | {"decoder.weight"}
    unknown = sorted(k for k in state if k not in known and not k.endswith(_BUFFERS))
    if unknown:
        raise CheckpointError(
            f"{source}: tensor {unknown[0]} is not a ModernBERT weight this importer knows "
            f"({len(unknown)} unknown in all; supported: {', '.join(ARCHITECTURES)})"
        )
    return cfg.replace(pair_head="none"), unflatten_params(flat)


def hf_state(params: Mapping[str, Any], cfg: ModelConfig) -> tuple[dict[str, np.ndarray], str]:
    """Our params (unrolled layers) -> (transformers state dict, architecture):
    `ModernBertForSequenceClassification` when a classifier is there (its
    pooler as `head`), `ModernBertForMaskedLM` when the MLM head is there (the
    tied decoder left out, as `save_pretrained` does), else `ModernBertModel`.
    A parameter transformers' ModernBERT has no place for (a pooler without a
    classifier, a pair or span head, MLM and classifier at once) is refused
    rather than dropped."""
    check_exportable(cfg)
    flat = flatten_params(params)
    architecture = _export_architecture(flat, cfg)
    prefix = PREFIX if architecture != ARCHITECTURES[0] else ""
    state = {}
    for name, path, kind in _encoder_pairs(cfg):
        state[prefix + name] = _to_hf(kind, _take(flat, path), cfg)
    for i in range(cfg.num_layers):
        ours = ("bert", "encoder", f"layer_{i}")
        for fused, parts in (("attn.Wqkv", [("attention", n) for n in ("query", "key", "value")]),
                             ("mlp.Wi", [("intermediate",), ("gate",)])):
            kernels = [_take(flat, ours + p + ("kernel",)) for p in parts]
            state[f"{prefix}layers.{i}.{fused}.weight"] = np.ascontiguousarray(
                np.concatenate([k.reshape(cfg.hidden_size, -1).T for k in kernels])
            )
            if cfg.linear_bias:
                biases = [_take(flat, ours + p + ("bias",)).reshape(-1) for p in parts]
                state[f"{prefix}layers.{i}.{fused}.bias"] = np.concatenate(biases)
    heads = {ARCHITECTURES[1]: _head_pairs, _CLASSIFIER: _classifier_pairs}.get(architecture)
    for name, path, kind in heads(cfg) if heads else []:
        state[name] = _to_hf(kind, _take(flat, path), cfg)
    return state, architecture


def _export_architecture(flat: Flat, cfg: ModelConfig) -> str:
    """The transformers class for our params' heads; CheckpointError naming
    a parameter it has no place for."""
    classifier = ("classifier", "kernel") in flat
    allowed = {"bert", "classifier"} if classifier else {"bert", "mlm"}
    extra = sorted(
        "/".join(p) for p in flat if p[0] not in allowed or (p[1] == "pooler" and not classifier)
    )
    if extra:
        raise CheckpointError(
            f"parameter {extra[0]} has no place in transformers' {', '.join(ARCHITECTURES[:3])}; export the "
            "bare encoder, one with the MLM head, or a sequence classifier"
        )
    if classifier and cfg.pooler != "head":
        raise CheckpointError(
            f"model.pooler={cfg.pooler!r}; transformers' {_CLASSIFIER} has ModernBERT's prediction head "
            "(model.pooler='head')"
        )
    if classifier:
        return _CLASSIFIER
    return ARCHITECTURES[1] if any(p[0] == "mlm" for p in flat) else ARCHITECTURES[0]


def _take(flat: Flat, path: tuple[str, ...]) -> np.ndarray:
    if path not in flat:
        raise CheckpointError(f"parameter {'/'.join(path)} is missing; the checkpoint is not a ModernBERT one")
    return np.asarray(flat[path], np.float32)
