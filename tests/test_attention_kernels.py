"""Fused attention kernels (issue 19, "Fused attention kernels"): the splash
kernel (Pallas interpret mode on CPU) equals the XLA path on tiny shapes, with
padding, packed documents, a sliding window and all at once, alone, inside the
encoder and under a DP x TP mesh; `auto` resolves per platform exactly; every
choice that cannot honour the settings is refused with one line.

The cuDNN kernel needs an NVIDIA GPU and is not run here: only its choice and
refusals are tested (its lowering is checked through `bert-jax compile`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import attention_kernels
from bert_jax.attention_kernels import resolve
from bert_jax.errors import ConfigError
from bert_jax.model import (
    BertForPreTraining,
    BertModel,
    ModelSpec,
    attention_mask,
    document_mask,
    modernbert_fields,
    sliding_window_mask,
)

SEQ = 256  # two of splash's 128-token blocks
TOL = 1e-5  # float32


def _qkv(batch=2, heads=2, head_dim=64, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=(batch, SEQ, heads, head_dim)), jnp.float32) for _ in range(3))


def _input_mask(lengths):
    return jnp.asarray(np.arange(SEQ)[None] < np.asarray(lengths)[:, None], jnp.int32)


def _documents(input_mask, cuts):
    """Document ids 1, 2, ... starting at each cut, 0 on padding."""
    ids = 1 + (np.arange(SEQ)[None, :] >= np.asarray(cuts)[:, :, None]).sum(1)
    return jnp.asarray(ids * np.asarray(input_mask), jnp.int32)


def _both_paths(input_mask, document_ids=None, window=0):
    """(splash, xla) attention outputs of the same q, k, v and masks."""
    q, k, v = _qkv()
    key_mask = attention_mask(input_mask)
    dense = key_mask if document_ids is None else document_mask(key_mask, document_ids)
    if window:
        dense = sliding_window_mask(dense, window, SEQ)
    segments = attention_kernels.segment_ids(key_mask, document_ids)
    splash = attention_kernels.splash_attention(q, k, v, segments, window)
    xla = jax.nn.dot_product_attention(q, k, v, mask=dense, implementation="xla")
    return splash, xla


def _real(x, input_mask):
    """The rows of real tokens only: padding queries' outputs are read by
    nothing, and splash lets them attend to padding (see segment_ids)."""
    return np.asarray(x)[np.asarray(input_mask) > 0]


def test_splash_equals_xla_with_padding():
    mask = _input_mask([SEQ, 170])
    splash, xla = _both_paths(mask)
    np.testing.assert_allclose(_real(splash, mask), _real(xla, mask), atol=TOL)


def test_splash_equals_xla_with_packed_documents():
    mask = _input_mask([SEQ, 200])
    docs = _documents(mask, [[60, 61, 190], [100, 150, 199]])  # a one-token document too
    splash, xla = _both_paths(mask, docs)
    np.testing.assert_allclose(_real(splash, mask), _real(xla, mask), atol=TOL)


def test_splash_equals_xla_with_a_sliding_window():
    mask = _input_mask([SEQ, SEQ])
    splash, xla = _both_paths(mask, window=64)
    np.testing.assert_allclose(_real(splash, mask), _real(xla, mask), atol=TOL)


def test_splash_equals_xla_with_documents_padding_and_a_window():
    mask = _input_mask([230, 129])
    docs = _documents(mask, [[90, 91, 92], [10, 100, 128]])
    splash, xla = _both_paths(mask, docs, window=32)
    np.testing.assert_allclose(_real(splash, mask), _real(xla, mask), atol=TOL)


def test_splash_gradients_equal_xla():
    """The kernel's backward pass (dq, dk, dv) against XLA's."""
    mask = _input_mask([SEQ, 180])
    docs = _documents(mask, [[100, 101, 102], [50, 120, 179]])
    key_mask = attention_mask(mask)
    dense = sliding_window_mask(document_mask(key_mask, docs), 32, SEQ)
    segments = attention_kernels.segment_ids(key_mask, docs)
    weight = jnp.asarray(mask, jnp.float32)[:, :, None, None]  # a loss on real tokens only

    def loss(fn):
        return lambda q, k, v: jnp.sum(fn(q, k, v) * weight)

    splash = jax.grad(loss(lambda q, k, v: attention_kernels.splash_attention(q, k, v, segments, 32)), (0, 1, 2))
    xla = jax.grad(loss(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=dense)), (0, 1, 2))
    for got, want in zip(splash(*_qkv()), xla(*_qkv()), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)


def _tiny_modernbert(impl, **kw):
    fields = modernbert_fields(
        vocab_size=64, hidden_size=128, num_layers=3, num_heads=2, intermediate_size=96,
        max_position_embeddings=SEQ, local_attention=16, global_attn_every_n_layers=2,
    )
    fields.update(kw)
    return ModelSpec(**fields, attention_impl=impl)


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    mask = _input_mask([SEQ, 150])
    ids = jnp.asarray(rng.integers(3, 64, size=(2, SEQ)), jnp.int32) * mask
    docs = _documents(mask, [[70, 140, 141], [30, 100, 149]])
    return ids, mask, docs


def test_encoder_with_splash_equals_xla_on_packed_rows():
    """The whole ModernBERT encoder (local and global layers, RoPE, documents)."""
    ids, mask, docs = _batch()
    xla_model = BertModel(_tiny_modernbert("xla"), add_pooler=False)
    params = xla_model.init(jax.random.PRNGKey(0), ids, mask)
    want = xla_model.apply(params, ids, mask, document_ids=docs)["sequence_output"]
    got = BertModel(_tiny_modernbert("splash"), add_pooler=False).apply(params, ids, mask, document_ids=docs)
    np.testing.assert_allclose(_real(got["sequence_output"], mask), _real(want, mask), atol=1e-4)


def test_pretraining_last_layer_at_masked_positions_with_splash():
    """The last layer computed at the masked positions only takes the XLA path
    (Q positions cannot tile the kernel); the logits equal the XLA model's."""
    ids, mask, docs = _batch(1)
    positions = jnp.asarray([[3, 80, 200], [1, 60, 140]], jnp.int32)
    xla_model = BertForPreTraining(_tiny_modernbert("xla"))
    params = xla_model.init(jax.random.PRNGKey(0), ids, mask, jnp.zeros_like(ids), positions)
    want = xla_model.apply(params, ids, mask, jnp.zeros_like(ids), positions, document_ids=docs)
    got = BertForPreTraining(_tiny_modernbert("splash")).apply(
        params, ids, mask, jnp.zeros_like(ids), positions, document_ids=docs
    )
    np.testing.assert_allclose(np.asarray(got["mlm_logits"]), np.asarray(want["mlm_logits"]), atol=1e-4)


def test_splash_under_a_data_and_tensor_mesh_equals_one_device():
    """Inside shard_map (batch over data x fsdp, heads over tensor) on a DP=2 x
    TP=2 mesh of CPU devices, the kernel gives the single-device output."""
    from bert_jax.train import sharding

    mask = _input_mask([SEQ, 190, 100, 256])
    docs = _documents(mask, [[40, 41, 250], [90, 91, 189], [20, 50, 99], [128, 129, 130]])
    key_mask = attention_mask(mask)
    segments = attention_kernels.segment_ids(key_mask, docs)
    q, k, v = _qkv(batch=4)
    want = attention_kernels.splash_attention(q, k, v, segments, 32)
    mesh = sharding.make_mesh({"data": 2, "fsdp": 1, "tensor": 2}, devices=jax.devices()[:4])
    fn = jax.jit(lambda q, k, v, s: attention_kernels.splash_attention(q, k, v, s, 32))
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
        text = fn.lower(q, k, v, segments).as_text()
        got = fn(q, k, v, segments)
    assert "manual_computation" in text  # the kernel runs per device, inside shard_map
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=TOL)


def _train_step_metrics(impl, mesh_sizes):
    """Metrics of one pre-training step on packed rows of a tiny ModernBERT,
    on a (data, fsdp, tensor) mesh, through the step the trainer builds."""
    import ml_collections

    from bert_jax.config import family_config
    from bert_jax.train import optim, sharding, state, step

    # Layer 0 global, layer 1 local (splash); the last layer, at the masked
    # positions only, takes the XLA path.
    cfg = _tiny_modernbert(impl)
    ids, mask, docs = _batch(2)
    ids, mask, docs = (np.concatenate([np.asarray(a)] * 2) for a in (ids, mask, docs))
    positions = np.asarray([[3, 80, 200], [1, 60, 140]] * 2, np.int32)
    batch = {
        "input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids), "document_ids": docs,
        "masked_lm_positions": positions, "masked_lm_ids": np.take_along_axis(ids, positions, 1),
        "masked_lm_weights": np.ones(positions.shape, np.float32), "next_sentence_labels": np.zeros(4, np.int32),
    }
    mesh = sharding.make_mesh(
        ml_collections.ConfigDict(dict(zip(("data", "fsdp", "tensor"), mesh_sizes, strict=True))),
        devices=jax.devices()[: int(np.prod(mesh_sizes))],
    )
    opt = optim.make_optimizer(family_config("modernbert", "tiny").optimizer, 10)
    train_state, shardings = state.create_sharded_state(cfg, opt, mesh, SEQ, positions.shape[1], 0)
    fn = step.make_train_step(cfg, opt, mesh, shardings)
    _, metrics = fn(train_state, jax.device_put(batch, sharding.batch_sharding(mesh)), jax.random.PRNGKey(0))
    return jax.device_get(metrics)


@pytest.mark.slow
def test_a_splash_train_step_on_a_dp_tp_mesh_equals_the_xla_step_on_one_device():
    """Forward and backward kernels inside the trainer's step, sharded."""
    want = _train_step_metrics("xla", (1, 1, 1))
    got = _train_step_metrics("splash", (2, 1, 2))  # DP=2 x TP=2
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(float(got[key]), float(want[key]), rtol=1e-4)


# `auto` per platform: (platform, dtype, dropout active, head_dim, seq_len) -> kernel.
AUTO_CASES = [
    ("cpu", "float32", False, 64, 1024, "xla"),
    ("cpu", "bfloat16", False, 64, 1024, "xla"),
    ("gpu", "bfloat16", False, 64, 1024, "cudnn"),
    ("cuda", "float16", False, 64, 1024, "cudnn"),
    ("gpu", "float32", False, 64, 1024, "xla"),  # cuDNN has no float32
    ("gpu", "bfloat16", False, 4, 1024, "xla"),  # head_dim not a multiple of 8
    ("gpu", "bfloat16", False, 512, 1024, "xla"),  # head_dim above cuDNN's 256
    ("tpu", "bfloat16", False, 64, 1024, "splash"),
    ("tpu", "float32", False, 64, 8192, "splash"),
    ("tpu", "bfloat16", False, 64, 100, "xla"),  # 100 tokens cannot tile 128-token blocks
    ("tpu", "bfloat16", True, 64, 1024, "explicit"),  # attention dropout: no fused kernel has it
    ("gpu", "bfloat16", True, 64, 1024, "explicit"),
    ("cpu", "float32", True, 64, 1024, "explicit"),
]


@pytest.mark.parametrize("platform,dtype,dropout_active,head_dim,seq_len,want", AUTO_CASES)
def test_auto_resolves_per_platform(platform, dtype, dropout_active, head_dim, seq_len, want):
    got = resolve(
        "auto", platform, dropout_active=dropout_active, dtype=dtype, head_dim=head_dim, seq_len=seq_len
    )
    assert got == want


@pytest.mark.parametrize("impl,platform", [("explicit", "tpu"), ("xla", "gpu"), ("cudnn", "gpu"),
                                           ("splash", "tpu"), ("splash", "cpu")])
def test_a_named_kernel_is_never_changed(impl, platform):
    got = resolve(impl, platform, dropout_active=False, dtype="bfloat16", head_dim=64, seq_len=100)
    assert got == impl


def test_the_platform_is_the_mesh_in_force():
    from bert_jax.train import sharding

    mesh = sharding.make_mesh({"data": 2, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:2])
    seen = []
    with jax.set_mesh(mesh):
        jax.jit(lambda x: seen.append(attention_kernels.current_platform()) or x)(1.0)
    assert seen == [mesh.devices.flat[0].platform]


def _platform_refusal(impl, platform) -> str:
    with pytest.raises(ConfigError) as err:
        resolve(impl, platform, dropout_active=False, dtype="bfloat16", head_dim=64, seq_len=1024)
    return str(err.value)


def test_auto_on_a_gpu_without_cudnn_in_this_process_takes_xla():
    """A deviceless GPU compile on a host without the CUDA libraries."""
    got = resolve("auto", "gpu", dropout_active=False, dtype="bfloat16", head_dim=64, seq_len=1024, cudnn=False)
    assert got == "xla"


def test_cudnn_without_cudnn_in_this_process_is_refused():
    with pytest.raises(ConfigError) as err:
        resolve("cudnn", "gpu", dropout_active=False, dtype="bfloat16", head_dim=64, seq_len=1024, cudnn=False)
    assert str(err.value) == (
        "model.attention_impl='cudnn' but this process has no cuDNN (a GPU compiled for from a host without "
        "the CUDA libraries); install jax[cuda12] there, or use attention_impl='auto' or 'xla'"
    )


def test_cudnn_off_gpu_is_refused():
    assert _platform_refusal("cudnn", "tpu") == (
        "model.attention_impl='cudnn' needs an NVIDIA GPU, but the step runs on tpu; "
        "use attention_impl='auto' or 'xla'"
    )


def test_splash_on_gpu_is_refused():
    assert _platform_refusal("splash", "gpu") == (
        "model.attention_impl='splash' is a TPU kernel (Pallas interpret mode on CPU, for tests), but the "
        "step runs on gpu; use attention_impl='auto' or 'cudnn'"
    )


def _refusal(**kw) -> str:
    with pytest.raises(ConfigError) as err:
        ModelSpec(**kw)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("impl", ["xla", "cudnn", "splash"])
def test_a_kernel_without_dropout_refuses_attention_dropout(impl):
    message = _refusal(attention_impl=impl, attention_dropout=0.1, dtype="bfloat16")
    assert message == (
        f"model.attention_impl={impl!r} has no attention dropout but model.attention_dropout=0.1; "
        "set model.attention_dropout=0, or attention_impl='explicit' or 'auto'"
    )


def test_cudnn_refuses_float32():
    assert _refusal(attention_impl="cudnn", attention_dropout=0.0, dtype="float32") == (
        "model.attention_impl='cudnn' needs model.dtype bfloat16 or float16 (cuDNN flash attention has no "
        "float32); set model.dtype='bfloat16', or attention_impl='xla'"
    )


def test_cudnn_refuses_a_head_dim_it_cannot_run():
    message = _refusal(
        attention_impl="cudnn", attention_dropout=0.0, dtype="bfloat16", hidden_size=8, num_heads=2
    )
    assert message.startswith("model.attention_impl='cudnn' needs a head_dim") and "got 4" in message


def test_an_unknown_kernel_is_refused():
    assert _refusal(attention_impl="flash") == (
        "model.attention_impl='flash'; expected one of auto, explicit, xla, cudnn, splash"
    )


def test_splash_refuses_a_length_it_cannot_tile():
    model = BertModel(_tiny_modernbert("splash"), add_pooler=False)
    ids = jnp.ones((1, 100), jnp.int32)
    params = model.init(jax.random.PRNGKey(0), ids)  # init takes the XLA path: any dummy length
    with pytest.raises(ConfigError) as err:
        model.apply(params, ids)
    # JAX appends a note on its filtered traceback below the message line.
    assert str(err.value).splitlines()[0] == (
        "model.attention_impl='splash' tiles the sequence in blocks of 128 tokens, but the sequence length "
        "(data.max_seq_length) is 100; use a multiple of 128, or attention_impl='xla'"
    )


@pytest.mark.parametrize("mesh_sizes,batch,name,size,axes,devices", [
    ((1, 1, 4), 4, "heads", 2, "('tensor',)", 4),  # 2 heads over tensor=4
    ((2, 1, 1), 3, "batch", 3, "('data', 'fsdp')", 2),  # 3 rows over data x fsdp = 2
])
def test_splash_refuses_a_mesh_that_does_not_divide_batch_or_heads(mesh_sizes, batch, name, size, axes, devices):
    from bert_jax.train import sharding

    mesh = sharding.make_mesh(dict(zip(("data", "fsdp", "tensor"), mesh_sizes, strict=True)),
                              devices=jax.devices()[:devices])
    q, k, v = (t[:1].repeat(batch, 0) for t in _qkv())
    segments = jnp.ones((batch, SEQ), jnp.int32)
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES), pytest.raises(ConfigError) as err:
        jax.jit(lambda q, k, v, s: attention_kernels.splash_attention(q, k, v, s)).lower(q, k, v, segments)
    assert str(err.value).splitlines()[0] == (
        f"model.attention_impl='splash' splits the {name} ({size}) over mesh axes {axes} of {devices} "
        "devices, which does not divide it; change the mesh or use attention_impl='xla'"
    )
