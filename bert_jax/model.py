"""The BERT encoder family in Flax Linen, and its task heads.

One encoder serves BERT, RoBERTa, ALBERT and ModernBERT by configuration
(`ModelConfig`): position-id offset, factorised embeddings, cross-layer
sharing, head types; pre- or post-LayerNorm, biases, GeGLU, RoPE, local
sliding-window attention with a global layer every N, a final norm.

Layering: this module knows nothing of meshes, files, logging or TensorFlow.
Every parameter carries logical axis names (`vocab`, `embed`, `mlp`, `heads`,
`kv`, `position`, `type`, `layers`, `classes`); a rule table elsewhere maps them
to mesh axes. Activations carry `batch`, `length`, `act_embed`, ... names
through `nn.with_logical_constraint`, which is a no-op outside a rules context.

dtype policy: parameters in `param_dtype` (float32), matmuls in `dtype`
(bfloat16 on accelerators), softmax and LayerNorm statistics in float32.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bert_jax import attention_kernels
from bert_jax.errors import ConfigError

Array = jax.Array
Dtype = Any

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.dots_saveable,
}


# BERT, RoBERTa, XLM-R and CamemBERT (RoBERTa with a SentencePiece vocab), ALBERT,
# ModernBERT (Warner et al. 2024).
FAMILIES = ("bert", "roberta", "xlmr", "camembert", "albert", "modernbert")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of one encoder of the BERT family (hashable: a jit static).

    Sizes follow the original `bert_config.json` names where it has them.
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"  # exact erf GELU, as BERT
    # ALBERT: factorised embeddings (0 means embedding_size == hidden_size) and
    # one layer's parameters applied num_layers times.
    embedding_size: int = 0
    share_layers: bool = False
    # RoBERTa: position ids start at pad_token_id + 1 and skip padding.
    position_offset: int = 0
    pad_token_id: int = 0
    # Pre-training sentence-pair head: "nsp", "sop" (same shape) or "none".
    pair_head: str = "nsp"
    # Which member of the family this is (FAMILIES): names checkpoints and
    # tokenizers by; the architecture comes from the fields above.
    family: str = "bert"
    num_labels: int = 2
    # Attention heads kept in each layer (head pruning), each of width head_dim;
    # None: num_heads everywhere (and the usual parameter shapes).
    heads_per_layer: tuple[int, ...] | None = None
    # ModernBERT's architecture; the defaults are BERT's. "post": LayerNorm
    # after each residual sum (BERT); "pre": before attention and the
    # feed-forward, layer 0 reading the embedding norm directly (ModernBERT).
    norm_position: str = "post"
    norm_bias: bool = True  # LayerNorms with a bias (False: scale only)
    # Biases of the attention projections, feed-forward and MLM transform.
    linear_bias: bool = True
    # "mlp": Dense, act, Dense (BERT); "geglu": act(x W_in) * (x W_gate), then
    # Dense (ModernBERT's GLU, `input, gate = Wi(x).chunk(2)` in transformers).
    feed_forward: str = "mlp"
    # "absolute": a learned position table (BERT); "rope": rotary embeddings
    # on queries and keys, no position table (ModernBERT).
    position_embedding: str = "absolute"
    global_rope_theta: float = 10000.0  # RoPE base of global layers
    local_rope_theta: float = 10000.0  # RoPE base of local (sliding-window) layers
    # Sliding-window attention: 0 = every layer global; W > 0: local layers see
    # W // 2 tokens each side (transformers' `local_attention`), and layer i is
    # global when i % global_attn_every_n_layers == 0.
    local_attention: int = 0
    global_attn_every_n_layers: int = 1
    final_norm: bool = False  # a LayerNorm after the last layer (ModernBERT)
    # The task heads' pooler. "tanh": tanh(Dense(pooled)) (BERT's pooler);
    # "head": Dense, activation, LayerNorm (ModernBERT's ModernBertPredictionHead),
    # which the token and span heads then also apply to every token first;
    # "" (a config written before the field existed): the family's, "head"
    # for ModernBERT, else "tanh". `pooling`: what the sequence classifier
    # pools, "cls" (the first token) or "mean" (the mean over real tokens;
    # transformers' `classifier_pooling`).
    pooler: str = ""
    pooling: str = "cls"

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size={self.hidden_size} is not divisible by "
                f"model.num_heads={self.num_heads}; pick sizes with hidden_size % num_heads == 0"
            )
        if self.embedding_size > self.hidden_size:
            raise ConfigError(
                f"model.embedding_size={self.embedding_size} is larger than "
                f"model.hidden_size={self.hidden_size}; ALBERT factorisation needs E <= H"
            )
        self._check_family()
        if self.pair_head not in ("nsp", "sop", "none"):
            raise ConfigError(f"model.pair_head={self.pair_head!r}; expected 'nsp', 'sop' or 'none'")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(f"model.hidden_act={self.hidden_act!r}; expected one of {sorted(ACTIVATIONS)}")
        self._check_heads_per_layer()
        if not self.pooler:  # frozen: the family's pooler, set once
            object.__setattr__(self, "pooler", "head" if self.family == "modernbert" else "tanh")
        self._check_modern()

    def _check_modern(self) -> None:
        """Refuses ModernBERT settings that contradict each other or that the
        encoder cannot build (one line each, naming the fields)."""
        choices = {
            "norm_position": ("post", "pre"),
            "feed_forward": ("mlp", "geglu"),
            "position_embedding": ("absolute", "rope"),
            "pooler": ("tanh", "head"),
            "pooling": ("cls", "mean"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"model.{name}={getattr(self, name)!r}; expected one of {', '.join(allowed)}")
        if self.position_embedding == "rope":
            if self.position_offset:
                raise ConfigError(
                    f"model.position_embedding='rope' with model.position_offset={self.position_offset} "
                    "(RoBERTa's learned positions); RoPE has no position table: set position_offset=0"
                )
            if self.head_dim % 2:
                raise ConfigError(f"model.position_embedding='rope' needs an even head_dim; got {self.head_dim}")
        if self.local_attention < 0 or self.local_attention > self.max_position_embeddings:
            raise ConfigError(
                f"model.local_attention={self.local_attention} is outside [0, max_position_embeddings="
                f"{self.max_position_embeddings}]; a window that covers every sequence is global attention: "
                "set local_attention=0, or a smaller window"
            )
        if self.global_attn_every_n_layers < 1:
            raise ConfigError(
                f"model.global_attn_every_n_layers={self.global_attn_every_n_layers}; layer i is global when "
                "i % N == 0, so N must be >= 1 (1: every layer global)"
            )
        if self.share_layers and not self.uniform_layers:
            raise ConfigError(
                "model.share_layers=True (ALBERT) shares one layer, but norm_position='pre' or local_attention "
                "make the layers differ: set share_layers=False"
            )

    @property
    def uniform_layers(self) -> bool:
        """Whether every layer has the same structure (scanned and shared
        layers need it): post-LN and no sliding window (head counts aside)."""
        return self.norm_position == "post" and not self.has_local_layers

    @property
    def has_local_layers(self) -> bool:
        """Whether any layer attends through a sliding window."""
        return any(self.layer_is_local(i) for i in range(self.num_layers))

    def layer_is_local(self, layer: int) -> bool:
        """Whether encoder layer `layer` (0-based) attends through the sliding window."""
        return self.local_attention > 0 and layer % self.global_attn_every_n_layers != 0

    def _check_heads_per_layer(self) -> None:
        """Normalises a JSON list to a tuple; refuses counts that one encoder
        cannot build (wrong length, < 1, > num_heads, scanned or shared layers
        with different counts)."""
        if self.heads_per_layer is None:
            return
        heads = tuple(int(h) for h in self.heads_per_layer)
        object.__setattr__(self, "heads_per_layer", heads)  # frozen: a list from JSON becomes hashable
        if len(heads) != self.num_layers or not all(1 <= h <= self.num_heads for h in heads):
            raise ConfigError(
                f"model.heads_per_layer={list(heads)}; expected {self.num_layers} counts (one per layer), "
                f"each from 1 to num_heads={self.num_heads}"
            )
        if self.share_layers and len(set(heads)) > 1:
            raise ConfigError(
                f"model.heads_per_layer={list(heads)} with model.share_layers=True (ALBERT); the one shared "
                "layer has one head count: give every layer the same count"
            )

    def layer_heads(self, layer: int) -> int:
        """Attention heads of encoder layer `layer` (0-based)."""
        return self.num_heads if self.heads_per_layer is None else self.heads_per_layer[layer]

    def _check_family(self) -> None:
        """Settings of two families mixed (e.g. ALBERT sharing with RoBERTa
        positions) -> ConfigError naming them."""
        if self.family not in FAMILIES:
            raise ConfigError(f"model.family={self.family!r}; expected one of {', '.join(FAMILIES)}")
        if self.share_layers and self.position_offset:
            raise ConfigError(
                f"model.share_layers=True (ALBERT) with model.position_offset={self.position_offset} "
                "(RoBERTa); ALBERT uses absolute positions: set position_offset=0"
            )
        roberta_like = self.family in ("roberta", "xlmr", "camembert")
        if roberta_like and (self.share_layers or self.embedding_size or not self.position_offset):
            raise ConfigError(
                f"model.family={self.family!r} needs RoBERTa positions and no ALBERT settings: "
                f"position_offset={self.position_offset} (want pad_token_id + 1), "
                f"share_layers={self.share_layers}, embedding_size={self.embedding_size} (want False, 0)"
            )
        if self.family == "albert" and self.position_offset:
            raise ConfigError(
                f"model.family='albert' with model.position_offset={self.position_offset}; ALBERT uses "
                "absolute positions: set position_offset=0"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def embed_dim(self) -> int:
        """Width of the token embedding table (ALBERT's E, else H)."""
        return self.embedding_size or self.hidden_size

    @classmethod
    def from_dict(cls, d) -> ModelConfig:
        """Builds from a mapping (e.g. a ConfigDict), naming any unknown key."""
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown model config key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def replace(self, **kw) -> ModelConfig:
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict[str, Any]:
        """The architecture fields only (what `model_config.json` holds),
        also of a ModelSpec."""
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}

    @property
    def architecture(self) -> ModelConfig:
        """This architecture alone (of a ModelSpec: without its execution)."""
        return ModelConfig(**self.to_dict())

    def with_execution(self, execution: Execution | None = None) -> ModelSpec:
        """This architecture run as `execution` (default: `Execution()`),
        refusing settings the two cannot honour together."""
        return ModelSpec(**self.to_dict(), **dataclasses.asdict(execution or Execution()))


ARCHITECTURE_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))


@dataclasses.dataclass(frozen=True)
class Execution:
    """How to run an architecture: dtypes, rematerialisation, layer layout,
    attention kernel. It comes from the run's config (pre-training's `model`
    section, fine-tuning's `dtype`), never from a checkpoint, so the same
    weights run unrolled in float32 for features and scanned in bfloat16 in
    a pre-training run."""

    dtype: str = "float32"  # matmul (compute) dtype
    param_dtype: str = "float32"
    remat_policy: str = "none"  # REMAT_POLICIES
    # Layers as one `nn.scan` over parameters stacked on a leading `layers`
    # axis (one layer compiled, not N). Saved models hold unrolled `layer_i`
    # (the canonical layout); `checkpoints.with_layer_layout` converts.
    scan_layers: bool = False
    # "explicit" (softmax + attention dropout), "xla", "cudnn" (GPU), "splash"
    # (TPU Pallas kernel), or "auto": the best kernel of the platform the step
    # is traced for that honours the settings (bert_jax.attention_kernels).
    attention_impl: str = "auto"
    # Pre-training reads the last layer only at the [CLS] and masked positions,
    # so that layer can compute queries, attention and feed-forward there alone
    # (keys and values still over every token): the same outputs, less work.
    # On by default, on every mesh (tests/test_activation_sharding.py).
    last_layer_outputs_only: bool = True

    def __post_init__(self):
        if self.remat_policy not in REMAT_POLICIES:
            raise ConfigError(
                f"model.remat_policy={self.remat_policy!r}; expected one of {sorted(REMAT_POLICIES)}"
            )
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ConfigError(
                    f"model.{name}={getattr(self, name)!r}; expected one of {sorted(_DTYPES)}"
                )

    @property
    def compute_dtype(self) -> Dtype:
        return _DTYPES[self.dtype]

    @property
    def weight_dtype(self) -> Dtype:
        return _DTYPES[self.param_dtype]

    @property
    def execution(self) -> Execution:
        """These settings alone (of a ModelSpec: without its architecture)."""
        return Execution(**{name: getattr(self, name) for name in EXECUTION_FIELDS})


EXECUTION_FIELDS = tuple(f.name for f in dataclasses.fields(Execution))


@dataclasses.dataclass(frozen=True)
class ModelSpec(ModelConfig, Execution):
    """An architecture with the execution it runs as: what a run builds its
    modules from (`ModelConfig.with_execution`, `config.model_config`), a
    hashable jit static. Never saved: `save_model` writes `.architecture`.
    The Flax modules also take a bare ModelConfig, run as `Execution()`."""

    def __post_init__(self):
        ModelConfig.__post_init__(self)
        Execution.__post_init__(self)
        attention_kernels.check_choice(self.attention_impl, self.attention_dropout, self.dtype, self.head_dim)
        if self.scan_layers and not self.uniform_layers:
            raise ConfigError(
                "model.scan_layers=True needs identical layers, but with norm_position='pre' layer 0 has no "
                "attention norm and with local_attention the layers differ in window and RoPE base: "
                "set scan_layers=False"
            )
        if self.scan_layers and len(set(self.heads_per_layer or ())) > 1:
            raise ConfigError(
                f"model.heads_per_layer={list(self.heads_per_layer)} with model.scan_layers=True; scanned "
                "layers need equal shapes: set scan_layers=False"
            )


def execution_of(cfg: ModelConfig) -> Execution:
    """How the modules built from `cfg` run: a ModelSpec's own execution, the
    default `Execution()` for a bare architecture."""
    return cfg if isinstance(cfg, Execution) else _DEFAULT_EXECUTION


_DEFAULT_EXECUTION = Execution()


def modernbert_fields(**overrides: Any) -> dict[str, Any]:
    """The ModelConfig fields that make the encoder ModernBERT (pre-LN, no
    biases, GeGLU, RoPE, no position or type table, alternating local and
    global attention, final norm), with the published settings of
    ModernBERT-base/-large unless overridden."""
    fields = dict(
        family="modernbert",
        norm_position="pre",
        norm_bias=False,
        linear_bias=False,
        feed_forward="geglu",
        position_embedding="rope",
        type_vocab_size=0,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
        local_attention=128,
        global_attn_every_n_layers=3,
        final_norm=True,
        layer_norm_eps=1e-5,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        pair_head="none",
        pooler="head",
    )
    fields.update(overrides)
    return fields


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": functools.partial(nn.gelu, approximate=False),
    "gelu_new": functools.partial(nn.gelu, approximate=True),
    "relu": nn.relu,
}


class _LogicalBox(nn.LogicallyPartitioned):
    """A parameter boxed with its logical axis names, as
    `nn.with_logical_partitioning` makes it, except that unboxing a value
    whose rank differs from the names applies no sharding constraint.

    Why: `nn.DenseGeneral` builds a multi-axis kernel (`[embed, heads, kv]`)
    by calling its initializer on the flattened 2-D shape and unboxing that
    before reshaping and re-boxing it. Under a mesh (the step traces with one,
    so that the activation constraints below take effect) a 3-name
    constraint on the 2-D value is invalid; the reshaped parameter keeps its
    names and is constrained as usual."""

    def unbox(self, apply_constraint: bool = True):
        if jnp.ndim(self.value) != len(self.names):
            apply_constraint = False
        return super().unbox(apply_constraint)


def _boxed(init: Callable, axes: tuple[str, ...]) -> Callable:
    """`init` whose output carries the logical names `axes` (`_LogicalBox`)."""

    def boxed_init(*args, **kwargs):
        return _LogicalBox(init(*args, **kwargs), axes)

    return boxed_init


def _init(cfg: ModelConfig, axes: tuple[str, ...]):
    return _boxed(nn.initializers.normal(stddev=cfg.initializer_range), axes)


def _zeros(axes: tuple[str, ...]):
    return _boxed(nn.initializers.zeros_init(), axes)


def _ones(axes: tuple[str, ...]):
    return _boxed(nn.initializers.ones_init(), axes)


def _layer_norm(cfg: ModelConfig, name: str, axis_name: str = "embed") -> nn.LayerNorm:
    # Flax LayerNorm promotes its statistics to float32 whatever the input dtype.
    return nn.LayerNorm(
        epsilon=cfg.layer_norm_eps,
        use_bias=cfg.norm_bias,
        dtype=execution_of(cfg).compute_dtype,
        param_dtype=execution_of(cfg).weight_dtype,
        scale_init=_ones((axis_name,)),
        bias_init=_zeros((axis_name,)),
        name=name,
    )


def _dense(cfg: ModelConfig, features: int, axes: tuple[str, str], name: str, bias: bool = True) -> nn.Dense:
    return nn.Dense(
        features,
        use_bias=bias,
        dtype=execution_of(cfg).compute_dtype,
        param_dtype=execution_of(cfg).weight_dtype,
        kernel_init=_init(cfg, axes),
        bias_init=_zeros((axes[1],)),
        name=name,
    )


def position_ids_for(input_ids: Array, cfg: ModelConfig, document_ids: Array | None = None) -> Array:
    """Position ids `[batch, seq]`: 0..L-1 for BERT/ALBERT; for RoBERTa
    (`position_offset > 0`) the cumulative count of non-pad tokens plus the pad
    index, pads at the pad index (HF `create_position_ids_from_input_ids`).
    With `document_ids` (packed rows) the count restarts at each document, so
    a packed document gets the positions it would have alone in its row."""
    if document_ids is None:
        if cfg.position_offset == 0:
            return jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
        not_pad = (input_ids != cfg.pad_token_id).astype(jnp.int32)
        return jnp.cumsum(not_pad, axis=-1) * not_pad + cfg.pad_token_id
    if cfg.position_offset == 0:
        return document_positions(document_ids)
    not_pad = (input_ids != cfg.pad_token_id).astype(jnp.int32)
    count = jnp.cumsum(not_pad, axis=-1)
    # Non-pad tokens before each document's first token, subtracted so the count restarts there.
    before = jnp.take_along_axis(count - not_pad, _document_starts(document_ids), axis=-1)
    return (count - before) * not_pad + cfg.pad_token_id


def _document_starts(document_ids: Array) -> Array:
    """`[batch, seq]`: the index of the first token of each token's document
    (documents are contiguous runs of one id; the padding run counts as one)."""
    index = jnp.broadcast_to(jnp.arange(document_ids.shape[-1]), document_ids.shape)
    changed = jnp.concatenate(
        [jnp.ones_like(document_ids[:, :1], bool), document_ids[:, 1:] != document_ids[:, :-1]], axis=-1
    )
    return jax.lax.cummax(jnp.where(changed, index, 0), axis=1)


def document_positions(document_ids: Array) -> Array:
    """`document_ids [batch, seq]` (packed rows) -> each token's 0-based index
    within its document: learned positions and RoPE restart at each document."""
    index = jnp.broadcast_to(jnp.arange(document_ids.shape[-1]), document_ids.shape)
    return index - _document_starts(document_ids)


def document_mask(mask: Array, document_ids: Array, query_positions: Array | None = None) -> Array:
    """`mask [batch, 1, 1 or Q, seq]` narrowed to keys of the query's own
    document (block-diagonal attention over a packed row): `[batch, 1, Q, seq]`.
    `query_positions [batch, Q]`: the queries are those positions only."""
    query_docs = document_ids if query_positions is None else gather_ids(document_ids, query_positions)
    return mask & (query_docs[:, None, :, None] == document_ids[:, None, None, :])


def gather_ids(values: Array, positions: Array) -> Array:
    """`values [batch, seq]`, `positions [batch, P]` -> `[batch, P]`."""
    return jnp.take_along_axis(values, positions.astype(jnp.int32), axis=1)


def _embed(cfg: ModelConfig, rows: int, row_axis: str) -> nn.Embed:
    """A `[rows, embed_dim]` table whose rows are sharded by the logical `row_axis`."""
    return nn.Embed(
        rows,
        cfg.embed_dim,
        dtype=execution_of(cfg).compute_dtype,
        param_dtype=execution_of(cfg).weight_dtype,
        embedding_init=_init(cfg, (row_axis, "embed")),
    )


class Embeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout.

    Returns `[batch, seq, hidden]` in the compute dtype. With ALBERT's
    factorisation the sum is `[batch, seq, E]`, projected to H. With RoPE
    there is no position table, and `type_vocab_size=0` has no type table
    (ModernBERT: word embeddings, norm, dropout).
    """

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        self.word_embeddings = _embed(cfg, cfg.vocab_size, "vocab")
        if cfg.position_embedding == "absolute":
            self.position_embeddings = _embed(cfg, cfg.max_position_embeddings, "position")
        if cfg.type_vocab_size:
            self.token_type_embeddings = _embed(cfg, cfg.type_vocab_size, "type")
        self.layer_norm = _layer_norm(cfg, "LayerNorm")
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        if cfg.embedding_size:
            self.projection = _dense(cfg, cfg.hidden_size, ("embed", "mlp"), "projection")

    def __call__(self, input_ids, token_type_ids, deterministic: bool, document_ids=None):
        cfg = self.cfg
        x = self.word_embeddings(input_ids)
        if cfg.position_embedding == "absolute":
            x = x + self.position_embeddings(position_ids_for(input_ids, cfg, document_ids))
        if cfg.type_vocab_size:
            x = x + self.token_type_embeddings(token_type_ids)
        x = self.dropout(self.layer_norm(x), deterministic=deterministic)
        if cfg.embedding_size:
            x = self.projection(x)
        return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))

    def attend(self, x: Array) -> Array:
        """Tied decoder: `[..., E] -> [..., vocab]` logits against the table."""
        return self.word_embeddings.attend(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a padding mask and attention dropout.

    `x [batch, seq, hidden]`, `mask [batch, 1, 1, seq]` (True = attend).
    `num_heads` (0: `cfg.num_heads`) heads of width `cfg.head_dim` each.
    `attention_impl` (the execution's) picks the computation (bert_jax.attention_kernels);
    the splash kernel reads `segments [batch, seq]` and `window` (0: global)
    instead of the dense mask.
    With `query_positions [batch, Q]` only those positions attend (keys and
    values still cover all of `x`) and the output is `[batch, Q, hidden]`.
    `rope_theta > 0` rotates queries and keys by their positions (RoPE):
    the token index, or `positions [batch, seq]` (within-document positions of
    packed rows). `mask` may also be `[batch, 1, Q, seq]` (a sliding window,
    documents).
    """

    cfg: ModelConfig
    num_heads: int = 0
    rope_theta: float = 0.0
    window: int = 0

    @nn.compact
    def __call__(self, x, mask, deterministic: bool, query_positions=None, positions=None, segments=None):
        cfg = self.cfg
        proj = functools.partial(
            nn.DenseGeneral,
            features=(self.num_heads or cfg.num_heads, cfg.head_dim),
            dtype=execution_of(cfg).compute_dtype,
            param_dtype=execution_of(cfg).weight_dtype,
            kernel_init=_init(cfg, ("embed", "heads", "kv")),
            bias_init=_zeros(("heads", "kv")),
            use_bias=cfg.linear_bias,
        )
        q = proj(name="query")(x if query_positions is None else gather_positions(x, query_positions))
        k = proj(name="key")(x)
        v = proj(name="value")(x)
        if self.rope_theta:
            key_positions = jnp.arange(x.shape[1])[None] if positions is None else positions
            query_rope = key_positions
            if query_positions is not None:
                query_rope = query_positions if positions is None else gather_ids(positions, query_positions)
            q = rotary(q, query_rope, self.rope_theta)
            k = rotary(k, key_positions, self.rope_theta)
        q = nn.with_logical_constraint(q, ("batch", "length", "act_heads", "act_kv"))
        k = nn.with_logical_constraint(k, ("batch", "length", "act_heads", "act_kv"))
        v = nn.with_logical_constraint(v, ("batch", "length", "act_heads", "act_kv"))
        ctx = self._attend(q, k, v, mask, deterministic, full_length=query_positions is None, segments=segments)
        out = nn.DenseGeneral(
            cfg.hidden_size,
            axis=(-2, -1),
            dtype=execution_of(cfg).compute_dtype,
            param_dtype=execution_of(cfg).weight_dtype,
            kernel_init=_init(cfg, ("heads", "kv", "embed")),
            bias_init=_zeros(("embed",)),
            use_bias=cfg.linear_bias,
            name="output",
        )(ctx)
        return out

    def _attend(self, q, k, v, mask, deterministic: bool, full_length: bool, segments):
        """The attention of the execution's `attention_impl`. Fused kernels run full-length
        layers only: Q gathered positions cannot tile their blocks (a small
        `[Q, seq]` attention), so those take the XLA path; so does `init`,
        whose dummy inputs (a few tokens) need not tile them and whose
        parameters do not depend on the kernel."""
        cfg, execution = self.cfg, execution_of(self.cfg)
        impl = attention_kernels.choose(
            execution.attention_impl,
            dropout_active=cfg.attention_dropout > 0.0 and not deterministic,
            dtype=execution.dtype,
            head_dim=cfg.head_dim,
            seq_len=k.shape[1],
        )
        if impl == "explicit":
            return self._explicit(q, k, v, mask, deterministic)
        full_length = full_length and not self.is_initializing()
        if impl == "splash" and full_length:
            return attention_kernels.splash_attention(q, k, v, segments, self.window)
        if impl == "cudnn" and full_length:
            return attention_kernels.cudnn_attention(q, k, v, mask)
        return attention_kernels.xla_attention(q, k, v, mask)

    def _explicit(self, q, k, v, mask, deterministic):
        cfg = self.cfg
        scale = 1.0 / jnp.sqrt(cfg.head_dim).astype(q.dtype)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * scale, k)
        # Softmax in float32 whatever the compute dtype.
        logits = jnp.where(mask, logits.astype(jnp.float32), jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1)
        probs = nn.Dropout(cfg.attention_dropout)(probs, deterministic=deterministic)
        return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)


def rotary(x: Array, positions: Array, theta: float) -> Array:
    """RoPE as transformers' `apply_rotary_pos_emb` (halves rotated, not
    interleaved): `x [batch, L, heads, d]`, `positions [batch or 1, L]`;
    angles and products in float32, the result in `x`'s dtype."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [b, L, d/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    x32 = x.astype(jnp.float32)
    half = d // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    return (x32 * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(x.dtype)


def sliding_window_mask(mask: Array, window: int, seq_len: int, query_positions=None) -> Array:
    """`mask [batch, 1, 1, seq]` narrowed to keys within `window // 2` tokens
    of each query (transformers' ModernBERT band): `[batch, 1, Q, seq]`."""
    keys = jnp.arange(seq_len)
    queries = keys[None] if query_positions is None else query_positions
    band = jnp.abs(queries[..., :, None] - keys) <= window // 2  # [batch or 1, Q, seq]
    return mask & band[:, None]


class EncoderLayer(nn.Module):
    """One Transformer layer: `[batch, seq, hidden]` in and out; `num_heads`
    attention heads (0: `cfg.num_heads`). With `query_positions [batch, Q]`
    the output is `[batch, Q, hidden]`, computed at those only.

    Post-LN (BERT): `x = LN(x + attn(x)); x = LN(x + ffn(x))`. Pre-LN
    (ModernBERT): `x = x + attn(LN(x)); x = x + ffn(LN(x))`, where layer 0
    (`attention_norm=False`) reads the embedding norm's output directly.
    `local` layers attend through the sliding window and use the local RoPE base.
    With `document_ids [batch, seq]` (packed rows) a token attends to its own
    document only and RoPE reads `positions`, the within-document positions.
    """

    cfg: ModelConfig
    num_heads: int = 0
    local: bool = False
    attention_norm: bool = True

    @nn.compact
    def __call__(self, x, mask, deterministic: bool, query_positions=None, document_ids=None, positions=None):
        cfg = self.cfg
        drop = nn.Dropout(cfg.hidden_dropout)
        # The splash kernel reads padding and documents as segment ids (unused,
        # and dropped by XLA, on the other paths).
        segments = attention_kernels.segment_ids(mask, document_ids)
        if document_ids is not None:
            mask = document_mask(mask, document_ids, query_positions)
        if self.local:
            mask = sliding_window_mask(mask, cfg.local_attention, x.shape[1], query_positions)
        theta = 0.0
        if cfg.position_embedding == "rope":
            theta = cfg.local_rope_theta if self.local else cfg.global_rope_theta
        window = cfg.local_attention if self.local else 0
        attention = SelfAttention(cfg, self.num_heads, theta, window, name="attention")
        if cfg.norm_position == "pre":
            h = _layer_norm(cfg, "attention_LayerNorm")(x) if self.attention_norm else x
            attn = attention(h, mask, deterministic, query_positions, positions, segments)
            if query_positions is not None:
                x = gather_positions(x, query_positions)
            x = x + drop(attn, deterministic=deterministic)
            h = self._feed_forward(_layer_norm(cfg, "output_LayerNorm")(x))
            x = x + drop(h, deterministic=deterministic)
            return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        attn = attention(x, mask, deterministic, query_positions, positions, segments)
        if query_positions is not None:
            x = gather_positions(x, query_positions)
        x = _layer_norm(cfg, "attention_LayerNorm")(x + drop(attn, deterministic=deterministic))
        h = self._feed_forward(x)
        x = _layer_norm(cfg, "output_LayerNorm")(x + drop(h, deterministic=deterministic))
        return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))

    def _feed_forward(self, x):
        """The classic MLP, or GeGLU: `act(x W_in) * (x W_gate)` then `W_out`."""
        cfg = self.cfg
        h = _dense(cfg, cfg.intermediate_size, ("embed", "mlp"), "intermediate", cfg.linear_bias)(x)
        h = ACTIVATIONS[cfg.hidden_act](h)
        if cfg.feed_forward == "geglu":
            gate = _dense(cfg, cfg.intermediate_size, ("embed", "mlp"), "gate", cfg.linear_bias)(x)
            h = h * nn.with_logical_constraint(gate, ("batch", "length", "act_mlp"))
        h = nn.with_logical_constraint(h, ("batch", "length", "act_mlp"))
        return _dense(cfg, cfg.hidden_size, ("mlp", "embed"), "output", cfg.linear_bias)(h)


class _ScanLayer(nn.Module):
    """Adapter giving EncoderLayer the (carry, x) -> (carry, y) form nn.scan
    needs; y is the layer output only when every layer's output is wanted."""

    cfg: ModelConfig
    emit_hidden: bool = False

    @nn.compact
    def __call__(self, x, mask, deterministic: bool, document_ids=None, positions=None):
        y = EncoderLayer(self.cfg, self.cfg.layer_heads(0), name="layer")(
            x, mask, deterministic, None, document_ids, positions
        )
        return y, (y if self.emit_hidden else None)


class Encoder(nn.Module):
    """`num_layers` encoder layers; unrolled, scanned, or one shared layer.

    Parameter trees: unrolled `layer_0 .. layer_{N-1}`; scanned `layers/layer`
    with a leading `layers` axis of size N; shared (ALBERT) `shared_layer`.
    Returns the final hidden states and, if asked, every layer's output
    (embeddings first), each `[batch, seq, hidden]`. With `output_positions
    [batch, Q]` the final states are `[batch, Q, hidden]` at those positions;
    unrolled and shared stacks then run the last layer there only.
    `document_ids` / `positions` (packed rows): see EncoderLayer.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(
        self, x, mask, deterministic: bool, return_all: bool = False, output_positions=None,
        document_ids=None, positions=None,
    ):
        cfg = self.cfg
        docs = (document_ids, positions)
        if return_all and output_positions is not None:
            raise ValueError("Encoder: return_all and output_positions are exclusive")
        execution = execution_of(cfg)
        last = cfg.num_layers - 1
        policy = REMAT_POLICIES[execution.remat_policy]
        layer_cls = EncoderLayer
        if execution.remat_policy != "none":
            layer_cls = nn.remat(EncoderLayer, policy=policy, static_argnums=(3,))
        hidden = [x]
        if cfg.share_layers:
            layer = layer_cls(cfg, cfg.layer_heads(0), name="shared_layer")
            for i in range(cfg.num_layers):
                x = layer(x, mask, deterministic, output_positions if i == last else None, *docs)
                hidden.append(x)
        elif execution.scan_layers:
            scan_cls = _ScanLayer
            if execution.remat_policy != "none":
                scan_cls = nn.remat(_ScanLayer, policy=policy, static_argnums=(3,))
            stack = nn.scan(
                scan_cls,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
                length=cfg.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, ys = stack(cfg, emit_hidden=return_all, name="layers")(x, mask, deterministic, *docs)
            if return_all:
                hidden.extend(ys[i] for i in range(cfg.num_layers))
            else:
                # Scanned layers share one shape: gather after the last.
                if output_positions is not None:
                    x = gather_positions(x, output_positions)
                hidden.append(x)
        else:
            for i in range(cfg.num_layers):
                positions = output_positions if i == last else None
                layer = layer_cls(
                    cfg,
                    cfg.layer_heads(i),
                    local=cfg.layer_is_local(i),
                    attention_norm=cfg.norm_position == "post" or i > 0,
                    name=f"layer_{i}",
                )
                x = layer(x, mask, deterministic, positions, *docs)
                hidden.append(x)
        return x, hidden


class Pooler(nn.Module):
    """The task heads' pooler (`cfg.pooler`, `cfg.pooling`): `x [batch, seq,
    hidden]`, `input_mask [batch, seq]` -> `[batch, hidden]`, the `transform`
    of [CLS] or of the mean over real tokens. `transform` (`[..., hidden]` in
    and out): tanh(Dense) for BERT; Dense, activation, LayerNorm for ModernBERT
    (transformers' ModernBertPredictionHead, biases as `linear_bias`)."""

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        bias = cfg.linear_bias if cfg.pooler == "head" else True
        self.dense = _dense(cfg, cfg.hidden_size, ("embed", "mlp"), "dense", bias)
        if cfg.pooler == "head":
            self.norm = _layer_norm(cfg, "LayerNorm")

    def transform(self, x: Array) -> Array:
        if self.cfg.pooler == "head":
            return self.norm(ACTIVATIONS[self.cfg.hidden_act](self.dense(x)))
        return jnp.tanh(self.dense(x))

    def __call__(self, x: Array, input_mask: Array, pool_positions=None, document_ids=None) -> Array:
        """`[batch, hidden]`; with `pool_positions [E]` (packed rows: each
        example's first token as row * seq + column) and `document_ids`,
        `[E, hidden]`, one per example, each pooled over its own document."""
        if pool_positions is not None and self.cfg.pooling != "mean":
            return self.transform(x.reshape(-1, x.shape[-1])[pool_positions])
        if pool_positions is not None:
            x, input_mask = _example_rows(x, input_mask, pool_positions, document_ids)
        if self.cfg.pooling == "mean":
            # Sums in float32 whatever the compute dtype; a row without real
            # tokens (none in practice) divides by 1, not 0.
            weights = (input_mask > 0).astype(jnp.float32)[..., None]
            total = jnp.sum(x.astype(jnp.float32) * weights, axis=1)
            pooled = (total / jnp.maximum(jnp.sum(weights, axis=1), 1.0)).astype(x.dtype)
        else:
            pooled = x[:, 0]
        return self.transform(pooled)


def _example_rows(x: Array, input_mask: Array, pool_positions: Array, document_ids: Array) -> tuple[Array, Array]:
    """Packed rows `x [rows, seq, hidden]` -> one row per example, `[E, seq,
    hidden]`, rolled so the example's first token (`pool_positions [E]`, row *
    seq + column) is column 0, with `input_mask [E, seq]` keeping only the
    example's own document: [CLS] pooling reads column 0, mean pooling the mask."""
    seq = x.shape[1]
    row, start = pool_positions // seq, pool_positions % seq
    columns = (start[:, None] + jnp.arange(seq)[None, :]) % seq
    rolled = x[row[:, None], columns]
    docs = document_ids[row[:, None], columns]
    own = (docs == docs[:, :1]) & (input_mask[row[:, None], columns] > 0)
    return rolled, own.astype(input_mask.dtype)


class BertModel(nn.Module):
    """Embeddings, encoder and pooler.

    Inputs `[batch, seq]` int32: `input_ids`, `input_mask` (1 = real token),
    `segment_ids`. Returns a dict with `sequence_output [batch, seq, hidden]`,
    `pooled_output [batch, hidden]` and, with `return_all_hidden`,
    `hidden_states`: a list of num_layers + 1 arrays `[batch, seq, hidden]`.
    With `output_positions [batch, P]`, `sequence_output` is `[batch, P,
    hidden]`, the states at those positions only (the pooler still reads
    [CLS]), computed at those positions only in the last layer. With
    `pool_positions [E]` (packed examples, see `Pooler`), `pooled_output` is
    `[E, hidden]`, one per example. With
    `final_norm` the sequence output is normed (`bert/final_LayerNorm`);
    `hidden_states` are the layer outputs before it, as in transformers.

    `document_ids [batch, seq]` (packed rows; 1, 2, ... per document, 0 for
    padding): attention is block-diagonal by document and positions (learned
    or RoPE) restart at each document, so each document's states equal its
    states alone in a row. None: one sequence per row, as always.

    `pooled_output` is the Pooler's (`cfg.pooler`, `cfg.pooling`); with
    `transform_tokens` the output also has `token_output [batch, seq,
    hidden]`, the Pooler's transform of every token (ModernBERT's token and
    span heads read it).
    """

    cfg: ModelConfig
    add_pooler: bool = True

    def setup(self):
        self.embeddings = Embeddings(self.cfg)
        self.encoder = Encoder(self.cfg)
        if self.cfg.final_norm:
            self.final_LayerNorm = _layer_norm(self.cfg, "final_LayerNorm")
        if self.add_pooler:
            self.pooler = Pooler(self.cfg)

    def __call__(
        self,
        input_ids,
        input_mask=None,
        segment_ids=None,
        *,
        deterministic: bool = True,
        return_all_hidden: bool = False,
        output_positions=None,
        document_ids=None,
        transform_tokens: bool = False,
        pool_positions=None,
    ):
        if output_positions is not None and self.add_pooler and self.cfg.pooling == "mean":
            raise ValueError("BertModel: mean pooling reads every token; output_positions would drop them")
        if input_mask is None:
            input_mask = jnp.ones_like(input_ids)
        if segment_ids is None:
            segment_ids = jnp.zeros_like(input_ids)
        mask = attention_mask(input_mask)
        positions = None
        if document_ids is not None:
            document_ids = nn.with_logical_constraint(document_ids, ("batch", "length"))
            positions = document_positions(document_ids)
        x = self.embeddings(input_ids, segment_ids, deterministic, document_ids)
        if output_positions is not None and self.add_pooler:
            # [CLS] first, for the pooler.
            cls = jnp.zeros_like(output_positions[:, :1])
            output_positions = jnp.concatenate([cls, output_positions], axis=1)
        x, hidden = self.encoder(
            x, mask, deterministic, return_all_hidden, output_positions, document_ids, positions
        )
        if self.cfg.final_norm:
            x = self.final_LayerNorm(x)
        out = {"sequence_output": x}
        if self.add_pooler:
            out["pooled_output"] = self.pooler(x, input_mask, pool_positions, document_ids)
            if transform_tokens:
                out["token_output"] = self.pooler.transform(x)
            if output_positions is not None:
                out["sequence_output"] = x[:, 1:]
        if return_all_hidden:
            out["hidden_states"] = hidden
        return out

    def attend(self, x):
        return self.embeddings.attend(x)


def attention_mask(input_mask: Array) -> Array:
    """`[batch, seq]` 0/1 padding mask -> `[batch, 1, 1, seq]` bool key mask."""
    return (input_mask > 0)[:, None, None, :]


def gather_positions(x: Array, positions: Array) -> Array:
    """`x [batch, seq, hidden]`, `positions [batch, P]` -> `[batch, P, hidden]`."""
    return jnp.take_along_axis(x, positions[..., None].astype(jnp.int32), axis=1)


class MaskedLMHead(nn.Module):
    """Transform (Dense, activation, LayerNorm) then the tied decoder + bias.

    `x [batch, P, hidden] -> logits [batch, P, vocab]` in float32.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, decoder: Callable[[Array], Array]):
        cfg = self.cfg
        h = _dense(cfg, cfg.embed_dim, ("mlp", "embed"), "dense", cfg.linear_bias)(x)
        h = ACTIVATIONS[cfg.hidden_act](h)
        h = _layer_norm(cfg, "LayerNorm")(h)
        # The logits split over the vocabulary (`act_vocab`) whatever the
        # table's own split: a vocabulary the tensor axis does not divide
        # (BERT's 30522 over 4) leaves the table replicated, and without this
        # every tensor rank would project onto all of it (issue 16).
        logits = nn.with_logical_constraint(decoder(h), ("batch", "length", "act_vocab"))
        bias = self.param("bias", _zeros(("vocab",)), (cfg.vocab_size,), execution_of(cfg).weight_dtype)
        return logits.astype(jnp.float32) + bias


class BertForPreTraining(nn.Module):
    """BERT with the MLM head (at `masked_lm_positions` only) and a pair head.

    Returns `mlm_logits [batch, P, vocab]` and, unless `pair_head == "none"`,
    `pair_logits [batch, 2]` (NSP or SOP), both float32. `document_ids`:
    packed rows (BertModel); MLM only, as a row holds no sentence pair.
    """

    cfg: ModelConfig

    def setup(self):
        self.bert = BertModel(self.cfg, add_pooler=self.cfg.pair_head != "none")
        self.mlm = MaskedLMHead(self.cfg)
        if self.cfg.pair_head != "none":
            self.pair = _dense(self.cfg, 2, ("embed", "classes"), "pair")

    def __call__(
        self, input_ids, input_mask, segment_ids, masked_lm_positions, *, deterministic=True, document_ids=None
    ):
        # A pair head that pools the mean reads every token of the last layer.
        mean_pooled_pair = self.cfg.pair_head != "none" and self.cfg.pooling == "mean"
        if execution_of(self.cfg).last_layer_outputs_only and not mean_pooled_pair:
            out = self.bert(
                input_ids, input_mask, segment_ids, deterministic=deterministic,
                output_positions=masked_lm_positions.astype(jnp.int32), document_ids=document_ids,
            )
            masked = out["sequence_output"]
        else:
            out = self.bert(
                input_ids, input_mask, segment_ids, deterministic=deterministic, document_ids=document_ids
            )
            masked = gather_positions(out["sequence_output"], masked_lm_positions)
        result = {"mlm_logits": self.mlm(masked, self.bert.attend)}
        if self.cfg.pair_head != "none":
            result["pair_logits"] = self.pair(out["pooled_output"]).astype(jnp.float32)
        return result


class BertForSequenceClassification(nn.Module):
    """Pooled output (`cfg.pooler` of [CLS] or the mean, `cfg.pooling`) ->
    dropout -> `logits [batch, num_labels]` (1 = regression); with ModernBERT's
    fields, transformers' ModernBertForSequenceClassification. Packed rows
    (`document_ids`, `pool_positions [E]`: `bert_jax.finetune.packing`) give
    `[E, num_labels]`, one per packed example."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, input_ids, input_mask, segment_ids, *, deterministic=True, document_ids=None,
                 pool_positions=None):
        out = BertModel(self.cfg, name="bert")(
            input_ids, input_mask, segment_ids, deterministic=deterministic, document_ids=document_ids,
            pool_positions=pool_positions,
        )
        x = nn.Dropout(self.cfg.hidden_dropout)(out["pooled_output"], deterministic=deterministic)
        return _dense(self.cfg, self.cfg.num_labels, ("embed", "classes"), "classifier")(x).astype(jnp.float32)


class BertForTokenClassification(nn.Module):
    """Every token (through the pooler's transform first when `cfg.pooler` is
    "head": ModernBertForTokenClassification) -> dropout -> `logits [batch,
    seq, num_labels]`."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, input_ids, input_mask, segment_ids, *, deterministic=True):
        x = _token_states(self.cfg, input_ids, input_mask, segment_ids, deterministic)
        x = nn.Dropout(self.cfg.hidden_dropout)(x, deterministic=deterministic)
        return _dense(self.cfg, self.cfg.num_labels, ("embed", "classes"), "classifier")(x).astype(jnp.float32)


class BertForQuestionAnswering(nn.Module):
    """Span extraction: `start_logits, end_logits`, each `[batch, seq]`; with
    `cfg.pooler == "head"` every token through the pooler's transform and
    dropout first (ModernBertForQuestionAnswering)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, input_ids, input_mask, segment_ids, *, deterministic=True):
        x = _token_states(self.cfg, input_ids, input_mask, segment_ids, deterministic)
        if self.cfg.pooler == "head":  # transformers' ModernBertForQuestionAnswering: dropout, then the dense
            x = nn.Dropout(self.cfg.hidden_dropout)(x, deterministic=deterministic)
        logits = _dense(self.cfg, 2, ("embed", "classes"), "qa_outputs")(x)
        logits = logits.astype(jnp.float32)
        return logits[..., 0], logits[..., 1]


def _token_states(cfg: ModelConfig, input_ids, input_mask, segment_ids, deterministic: bool) -> Array:
    """`[batch, seq, hidden]` the token and span heads read: the sequence
    output (BERT), or its pooler transform (`cfg.pooler == "head"`, ModernBERT)."""
    head = cfg.pooler == "head"
    out = BertModel(cfg, add_pooler=head, name="bert")(
        input_ids, input_mask, segment_ids, deterministic=deterministic, transform_tokens=head
    )
    return out["token_output"] if head else out["sequence_output"]


def dummy_pretraining_inputs(batch: int, seq_len: int, max_predictions: int) -> dict[str, Array]:
    """Zero inputs of the pre-training shapes, for `init` and shape tracing."""
    ids = jnp.zeros((batch, seq_len), jnp.int32)
    return {
        "input_ids": ids,
        "input_mask": jnp.ones_like(ids),
        "segment_ids": ids,
        "masked_lm_positions": jnp.zeros((batch, max_predictions), jnp.int32),
    }


def count_params(params: Any) -> int:
    """Number of scalars in a parameter tree (boxed or not)."""
    return sum(x.size for x in jax.tree_util.tree_leaves(nn.meta.unbox(params)))

