"""Fused attention kernels: which one a configuration may use, and the wrappers.

`model.attention_impl` names the attention computation (docs/family.md,
"Attention kernels"):

- `explicit`: einsum, float32 softmax, attention dropout, einsum (any platform).
- `xla`: `jax.nn.dot_product_attention(implementation="xla")` (any platform).
- `cudnn`: the same call with cuDNN flash attention (NVIDIA GPUs; bf16/fp16).
  The padding, document and sliding-window masks reach it as one boolean mask
  `[batch, 1, seq, seq]` (cuDNN takes it as a bias): its own `local_window_size`
  is one-sided (causal) only, and ModernBERT's window is two-sided.
- `splash`: the Pallas splash-attention kernel (TPU; Pallas interpret mode
  elsewhere, for tests): padding and documents as segment ids, the window as
  a `LocalMask`. Under a mesh it runs per device inside `shard_map`, the batch
  split over the rule table's `batch` axes and heads over `act_heads`.
- `auto`: the platform's best kernel that honours the settings (`resolve`):
  `cudnn` on GPU, `splash` on TPU, `xla` on CPU; `explicit` in steps with
  attention dropout (no fused kernel has it). It is resolved per layer call
  while the step is traced, for the platform of the mesh in force (the mesh
  `jax.set_mesh` puts in context where the step is built: a deviceless
  TPU/GPU compile resolves for its topology) and for the actual sequence
  length, so phases and length buckets get the kernel that fits each.

A fused kernel runs the full-length layers; the last layer computed at a few
query positions only (`last_layer_outputs_only`) is a `[Q, seq]` attention
that cannot tile the kernels' blocks and takes the XLA path.

The model passes its configuration and never asks about devices: `resolve`
takes the platform as an argument, `current_platform` reads the mesh in
force, and splash picks its TPU kernel or the Pallas interpreter when the
program is lowered (`jax.lax.platform_dependent`), so a deviceless TPU
compile on a CPU host gets the TPU kernel.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from bert_jax.errors import ConfigError

IMPLEMENTATIONS = ("auto", "explicit", "xla", "cudnn", "splash")
# Kernels with no attention dropout (only `explicit` has it).
WITHOUT_DROPOUT = ("xla", "cudnn", "splash")
# Splash tiles the sequence in blocks that are multiples of the TPU's 128 lanes.
SPLASH_BLOCK = 128
# cuDNN flash attention: head dims up to 256 (Hopper and later; 128 before), multiples of 8.
CUDNN_MAX_HEAD_DIM = 256
CUDNN_DTYPES = ("bfloat16", "float16")


def check_choice(impl: str, attention_dropout: float, dtype: str, head_dim: int) -> None:
    """Refuses an `attention_impl` that cannot honour the other settings, one
    ConfigError line naming the setting and the fix. The sequence length is
    checked where it is known (`check_splash_length`)."""
    if impl not in IMPLEMENTATIONS:
        raise ConfigError(f"model.attention_impl={impl!r}; expected one of {', '.join(IMPLEMENTATIONS)}")
    if impl in WITHOUT_DROPOUT and attention_dropout > 0:
        raise ConfigError(
            f"model.attention_impl={impl!r} has no attention dropout but model.attention_dropout="
            f"{attention_dropout}; set model.attention_dropout=0, or attention_impl='explicit' or 'auto'"
        )
    if impl == "cudnn" and dtype not in CUDNN_DTYPES:
        raise ConfigError(
            f"model.attention_impl='cudnn' needs model.dtype bfloat16 or float16 (cuDNN flash attention "
            f"has no {dtype}); set model.dtype='bfloat16', or attention_impl='xla'"
        )
    if impl == "cudnn" and (head_dim % 8 or head_dim > CUDNN_MAX_HEAD_DIM):
        raise ConfigError(
            f"model.attention_impl='cudnn' needs a head_dim (hidden_size / num_heads) that is a multiple "
            f"of 8 and at most {CUDNN_MAX_HEAD_DIM}; got {head_dim}: use attention_impl='xla'"
        )


def check_splash_length(seq_len: int) -> None:
    """Refuses a sequence length the splash kernel cannot tile."""
    if seq_len % SPLASH_BLOCK:
        raise ConfigError(
            f"model.attention_impl='splash' tiles the sequence in blocks of {SPLASH_BLOCK} tokens, but the "
            f"sequence length (data.max_seq_length) is {seq_len}; use a multiple of {SPLASH_BLOCK}, "
            "or attention_impl='xla'"
        )


def _platform_kind(platform: str) -> str:
    """`Device.platform` / `jax.default_backend()` names to cpu, gpu or tpu."""
    platform = platform.lower()
    if platform in ("gpu", "cuda", "rocm"):
        return "gpu"
    return platform


def resolve(
    impl: str, platform: str, *, dropout_active: bool, dtype: str, head_dim: int, seq_len: int,
    cudnn: bool = True,
) -> str:
    """The attention a step on `platform` (cpu, gpu, tpu) runs for `impl`:
    `explicit`, `xla`, `cudnn` or `splash`. A named kernel is kept (refused
    on a platform that has none); `auto` is `explicit` while attention
    dropout is active (no fused kernel has it), else the platform's best
    kernel that honours the settings: cuDNN on GPU (bf16/fp16, head_dim a
    multiple of 8 up to 256), splash on TPU (a sequence of 128-token
    blocks), XLA otherwise. `cudnn`: whether this process can build the
    cuDNN kernel (`cudnn_available`)."""
    kind = _platform_kind(platform)
    if impl == "cudnn" and kind != "gpu":
        raise ConfigError(
            f"model.attention_impl='cudnn' needs an NVIDIA GPU, but the step runs on {platform}; "
            "use attention_impl='auto' or 'xla'"
        )
    if impl == "cudnn" and not cudnn:
        raise ConfigError(
            "model.attention_impl='cudnn' but this process has no cuDNN (a GPU compiled for from a host "
            "without the CUDA libraries); install jax[cuda12] there, or use attention_impl='auto' or 'xla'"
        )
    if impl == "splash" and kind == "gpu":
        raise ConfigError(
            "model.attention_impl='splash' is a TPU kernel (Pallas interpret mode on CPU, for tests), but the "
            "step runs on gpu; use attention_impl='auto' or 'cudnn'"
        )
    if impl != "auto":
        return impl
    if dropout_active:
        return "explicit"
    if kind == "gpu" and cudnn and dtype in CUDNN_DTYPES and head_dim % 8 == 0 and head_dim <= CUDNN_MAX_HEAD_DIM:
        return "cudnn"
    if kind == "tpu" and seq_len % SPLASH_BLOCK == 0:
        return "splash"
    return "xla"


def current_platform() -> str:
    """The platform of the mesh the step is traced under (`jax.set_mesh`:
    bert_jax.train.sharding.MeshJitted; a deviceless compile's TPU or GPU
    topology), else JAX's default backend (a model applied without a mesh)."""
    mesh = jax.sharding.get_abstract_mesh()
    if not mesh.empty and mesh.abstract_device is not None:
        return mesh.abstract_device.platform
    return jax.default_backend()


@functools.cache
def cudnn_available() -> bool:
    """Whether this process can build cuDNN attention: JAX traces it only
    where the cuDNN library loads, which a deviceless GPU compile on a host
    without the CUDA libraries lacks (`auto` then takes XLA's path)."""
    try:
        from jax._src.cudnn.fused_attention_stablehlo import check_cudnn_version

        check_cudnn_version()
    except Exception:  # no CUDA plugin, no cuDNN, or an API that moved: no cuDNN kernel
        return False
    return True


def choose(impl: str, *, dropout_active: bool, dtype: str, head_dim: int, seq_len: int) -> str:
    """`resolve` on the platform the step is being traced for."""
    platform = current_platform()
    cudnn = _platform_kind(platform) == "gpu" and cudnn_available()
    return resolve(
        impl, platform, dropout_active=dropout_active, dtype=dtype, head_dim=head_dim, seq_len=seq_len,
        cudnn=cudnn,
    )


def segment_ids(key_mask: jax.Array, document_ids: jax.Array | None) -> jax.Array:
    """Splash's segment ids `[batch, seq]` int32 from the key mask `[batch, 1,
    1, seq]` and `document_ids` (packed rows; None: one sequence per row).

    Real tokens carry their document (1 without documents), padding 0, so a
    token attends to its own document's real tokens, exactly as the dense mask
    says. Padding queries attend to padding (the dense mask lets them see
    every real key): their outputs differ, and nothing reads them."""
    real = key_mask[:, 0, 0, :]
    ids = jnp.ones(real.shape, jnp.int32) if document_ids is None else document_ids.astype(jnp.int32)
    return jnp.where(real, ids, 0)


def _block(seq_len: int) -> int:
    """The largest of 512, 256, 128 that divides `seq_len`."""
    return next(b for b in (512, 256, SPLASH_BLOCK) if seq_len % b == 0)


def _splash_kernel(heads: int, seq_len: int, window: int, interpret: bool):
    """One row's splash kernel: `[heads, seq, d]` q, k, v and SegmentIds in,
    `[heads, seq, d]` out; a `LocalMask` of `window // 2` tokens each side
    when `window > 0` (transformers' ModernBERT band), else full attention."""
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    shape = (seq_len, seq_len)
    if window:
        head_mask = sa.LocalMask(shape, (window // 2, window // 2), offset=0)
    else:
        head_mask = sa.FullMask(shape)
    b = _block(seq_len)
    blocks = sa.BlockSizes(
        block_q=b, block_kv=b, block_kv_compute=b,
        block_q_dkv=b, block_kv_dkv=b, block_kv_dkv_compute=b,
        block_q_dq=b, block_kv_dq=b,
    )
    return sa.make_splash_mha(
        sa.MultiHeadMask([head_mask] * heads), block_sizes=blocks, head_shards=1, q_seq_shards=1,
        interpret=interpret,
    )


def _splash_local(q, k, v, segments, *, window: int, interpret: bool):
    """Splash on one device's block: `[b, heads, seq, d]` q (already scaled),
    k, v and `[b, seq]` segment ids; vmapped over the batch."""
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    kernel = _splash_kernel(q.shape[1], q.shape[2], window, interpret)

    def one_row(q, k, v, seg):
        return kernel(q, k, v, segment_ids=sa.SegmentIds(seg, seg))

    return jax.vmap(one_row)(q, k, v, segments)


def _mesh_spec(logical: str, mesh) -> tuple[str, ...] | None:
    """The mesh axes the rule table in force maps `logical` to (None: none)."""
    spec = nn.logical_to_mesh_axes((logical,))
    axes = spec[0] if spec else None
    if axes is None:
        return None
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    axes = tuple(a for a in axes if a in mesh.axis_names)
    return axes or None


def _axes_size(mesh, axes: tuple[str, ...] | None) -> int:
    return math.prod(mesh.shape[a] for a in axes) if axes else 1


def splash_attention(q, k, v, segments, window: int = 0):
    """Self-attention by the splash kernel: `q, k, v [batch, seq, heads, d]`
    (the model's layout), `segments [batch, seq]` (`segment_ids`), `window`
    (0: global). Returns `[batch, seq, heads, d]` in q's dtype.

    Lowered for anything but TPU the kernel runs in Pallas interpret mode
    (slow; for tests). Under
    a mesh with more than one device the kernel runs per device inside
    `shard_map`: batch over the axes the rules give `batch`, heads over those
    of `act_heads`; the sequence stays whole on each device."""
    batch, seq_len, heads, head_dim = q.shape
    check_splash_length(seq_len)
    scale = 1.0 / math.sqrt(head_dim)
    # The kernel takes heads-major blocks and unscaled logits.
    q, k, v = (jnp.swapaxes(t, 1, 2) for t in (q * jnp.asarray(scale, q.dtype), k, v))
    segments = segments.astype(jnp.int32)
    mesh = jax.sharding.get_abstract_mesh()

    def local(*args):
        # The platform is known when the program is lowered (a deviceless
        # TPU compile runs on a CPU host): the Mosaic kernel for TPU, the
        # interpreter elsewhere.
        return jax.lax.platform_dependent(
            *args,
            tpu=functools.partial(_splash_local, window=window, interpret=False),
            default=functools.partial(_splash_local, window=window, interpret=True),
        )

    if mesh.empty or mesh.size == 1:
        out = local(q, k, v, segments)
    else:
        out = _sharded(local, mesh, q, k, v, segments)
    return jnp.swapaxes(out, 1, 2)


def _sharded(local, mesh, q, k, v, segments):
    """`local` inside `shard_map`: batch and heads split as the rule table
    says, each device running the kernel on its own rows and heads."""
    batch_axes = _mesh_spec("batch", mesh)
    head_axes = _mesh_spec("act_heads", mesh)
    batch, heads = q.shape[0], q.shape[1]
    for name, size, axes in (("batch", batch, batch_axes), ("heads", heads, head_axes)):
        if size % _axes_size(mesh, axes):
            raise ConfigError(
                f"model.attention_impl='splash' splits the {name} ({size}) over mesh axes {axes} of "
                f"{_axes_size(mesh, axes)} devices, which does not divide it; change the mesh or "
                "use attention_impl='xla'"
            )
    qkv_spec = PartitionSpec(batch_axes, head_axes, None, None)
    seg_spec = PartitionSpec(batch_axes, None)
    fn = jax.shard_map(
        local, in_specs=(qkv_spec, qkv_spec, qkv_spec, seg_spec), out_specs=qkv_spec,
        check_vma=False,
    )
    return fn(q, k, v, segments)


def cudnn_attention(q, k, v, mask):
    """cuDNN flash attention: `q, k, v [batch, seq, heads, d]` (bf16/fp16),
    `mask` broadcastable to `[batch, 1, seq, seq]` (True = attend), which
    cuDNN needs at full query length (it becomes the bias)."""
    batch, seq_len = q.shape[0], q.shape[1]
    full = jnp.broadcast_to(mask, (batch, 1, seq_len, k.shape[1]))
    return jax.nn.dot_product_attention(q, k, v, mask=full, implementation="cudnn")


def xla_attention(q, k, v, mask):
    """`jax.nn.dot_product_attention` on the XLA path."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


__all__ = [
    "IMPLEMENTATIONS",
    "check_choice",
    "check_splash_length",
    "cudnn_attention",
    "choose",
    "cudnn_available",
    "current_platform",
    "resolve",
    "segment_ids",
    "splash_attention",
    "xla_attention",
]


