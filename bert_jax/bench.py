"""`bert-jax bench`: time the real pre-training step, and the reference's.

What is timed is the step pretrain runs (`bert_jax.train.step.make_train_step`:
forward, backward, AdamW update as the config says) on a fixed synthetic
batch of the real pre-training shapes, already on the devices, after
compilation and warm-up; every step is synchronised with
`jax.block_until_ready` on its outputs and the median is reported.

`compare=True` also builds the step users run today: Hugging Face
transformers' `FlaxBertForPreTraining` trained as its `run_mlm_flax.py`
example trains it (MLM logits at every position, softmax cross-entropy on the
masked labels, here plus the NSP loss of BERT's objective; `optax.adamw` with
the example's decay mask and warmup/linear-decay schedule, clipped as our
config clips; `jax.pmap` with the state donated). The two run in the same
process, interleaved in rounds (ours, reference, ours, ...), so machine noise
falls on both alike.

No TensorFlow here (a GPU image has none): jax, flax, optax, numpy and our
core modules; transformers only when comparing. Its CLI is
`bert_jax/commands/bench.py`.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bert_jax import flops
from bert_jax.compile.topologies import CHIPS
from bert_jax.config import StepShape, model_config, resolve_config
from bert_jax.errors import ConfigError, UserError
from bert_jax.model import count_params
from bert_jax.train import optim, sharding, state, step

# Ids below this are [PAD], [unused*], [UNK], [CLS], [SEP], [MASK] in BERT's vocab.
_FIRST_ORDINARY_ID = 1000


def synthetic_batch(shape: StepShape, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A pre-training batch (docs/design.md) of random tokens: full-length
    sequences, two segments, `max_predictions` distinct masked positions each
    (never [CLS] at 0), all weights 1. Arrays `[batch, seq]`, `[batch, P]`, `[batch]`."""
    b, s, p = shape.batch_size, shape.seq_len, shape.max_predictions
    rng = np.random.default_rng(seed)
    low = min(_FIRST_ORDINARY_ID, vocab_size // 2)
    segment_ids = np.zeros((b, s), np.int32)
    segment_ids[:, s // 2 :] = 1
    positions = np.sort(np.stack([rng.choice(np.arange(1, s), p, replace=False) for _ in range(b)]), axis=1)
    return {
        "input_ids": rng.integers(low, vocab_size, (b, s), dtype=np.int32),
        "input_mask": np.ones((b, s), np.int32),
        "segment_ids": segment_ids,
        "masked_lm_positions": positions.astype(np.int32),
        "masked_lm_ids": rng.integers(low, vocab_size, (b, p), dtype=np.int32),
        "masked_lm_weights": np.ones((b, p), np.float32),
        "next_sentence_labels": rng.integers(0, 2, (b,), dtype=np.int32),
    }


# --------------------------------------------------------------------------
# The two steps under test. Each is a `Runner`: a closure advancing its own
# state by one step and returning what must be waited on.


@dataclasses.dataclass
class Runner:
    """One implementation's step, its state and inputs, already compiled.

    `advance()` runs one step and returns its outputs (for block_until_ready).
    `compile_s`: seconds spent lowering and compiling. `num_params`: scalars
    in the model's parameters.
    """

    name: str
    advance: Callable[[], Any]
    compile_s: float
    num_params: int

    def time_steps(self, n: int) -> list[float]:
        """Runs `n` steps, each waited for; returns their times in ms."""
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            jax.block_until_ready(self.advance())
            times.append((time.perf_counter() - t0) * 1e3)
        return times


def build_ours(config: ml_collections.ConfigDict, batch_np: dict[str, np.ndarray]) -> Runner:
    """pretrain's train step (`bert_jax.train.step`), built as the loop builds
    it: the config's mesh, optimizer and sharded state, `batch_np` placed with
    the batch sharding once, the state's base key as the dropout key."""
    model_cfg = model_config(config)
    mesh, rules = sharding.make_mesh(config.mesh), sharding.rules_of(config.mesh)
    accum = int(config.optimizer.get("grad_accum_steps", 1))
    sharding.check_batch_size(int(config.batch_size), mesh, accum)
    optimizer = optim.make_optimizer(config.optimizer, int(config.total_steps))
    train_state, shardings = state.create_sharded_state(
        model_cfg,
        optimizer,
        mesh,
        config.data.max_seq_length,
        config.data.max_predictions_per_seq,
        int(config.seed),
        rules,
    )
    batch_sharding = sharding.batch_sharding(mesh)
    train_step = step.make_train_step(
        model_cfg, optimizer, mesh, shardings, batch_sharding, accum_steps=accum, rules=rules
    )
    batch = {k: jax.device_put(v, batch_sharding) for k, v in batch_np.items()}
    rng = jnp.array(train_state.rng)  # a copy: the state's buffers are donated
    num_params = count_params(train_state.params)
    t0 = time.perf_counter()
    compiled = train_step.lower(train_state, batch, rng).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": train_state}

    def advance():
        holder["state"], metrics = compiled(holder["state"], batch, rng)
        return holder["state"], metrics

    return Runner("bert_jax", advance, compile_s, num_params)


def _import_transformers():
    try:
        import transformers
        from transformers import BertConfig, FlaxBertForPreTraining
    except ImportError as e:
        raise UserError(
            f"--compare needs Hugging Face transformers with Flax ({e}); "
            "pip install 'transformers>=4.40,<5' or run without --compare"
        ) from None
    return transformers.__version__, BertConfig, FlaxBertForPreTraining


def reference_labels(batch_np: dict[str, np.ndarray]) -> np.ndarray:
    """run_mlm_flax's labels `[batch, seq]`: the original id at masked
    positions, -100 elsewhere (its loss keeps labels > 0)."""
    labels = np.full(batch_np["input_ids"].shape, -100, np.int32)
    np.put_along_axis(labels, batch_np["masked_lm_positions"], batch_np["masked_lm_ids"], axis=1)
    return labels


def build_reference(
    config: ml_collections.ConfigDict, batch_np: dict[str, np.ndarray], seed: int = 0
) -> Runner:
    """Hugging Face FlaxBertForPreTraining trained as run_mlm_flax.py trains
    it (see the module docstring), with our config's sizes, dtype and optimizer
    hyper-parameters; pmapped over the local devices like the example."""
    import optax
    from flax import jax_utils, traverse_util
    from flax.training import common_utils, train_state

    version, BertConfig, FlaxBertForPreTraining = _import_transformers()
    m, o = config.model, config.optimizer
    if m.embedding_size or m.share_layers or m.position_offset:
        raise ConfigError("--compare supports BERT configs only (no ALBERT/RoBERTa options in model.*)")
    hf_config = BertConfig(
        vocab_size=m.vocab_size,
        hidden_size=m.hidden_size,
        num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads,
        intermediate_size=m.intermediate_size,
        hidden_act=m.hidden_act,
        hidden_dropout_prob=m.hidden_dropout,
        attention_probs_dropout_prob=m.attention_dropout,
        max_position_embeddings=m.max_position_embeddings,
        type_vocab_size=m.type_vocab_size,
        initializer_range=m.initializer_range,
        layer_norm_eps=m.layer_norm_eps,
    )
    model = FlaxBertForPreTraining(hf_config, seed=seed, dtype=getattr(jnp, m.dtype))

    # The example's schedule and optimizer, with our warmup, total steps and clipping.
    warmup_fn = optax.linear_schedule(0.0, o.learning_rate, o.warmup_steps)
    decay_fn = optax.linear_schedule(o.learning_rate, 0, max(1, config.total_steps - o.warmup_steps))
    schedule = optax.join_schedules([warmup_fn, decay_fn], [o.warmup_steps])

    def decay_mask_fn(params):
        flat = traverse_util.flatten_dict(params)
        mask = {p: (p[-1] != "bias" and p[-2:] != ("LayerNorm", "scale")) for p in flat}
        return traverse_util.unflatten_dict(mask)

    tx = optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=decay_mask_fn)
    if o.max_grad_norm:
        tx = optax.chain(optax.clip_by_global_norm(o.max_grad_norm), tx)
    tstate = train_state.TrainState.create(apply_fn=model.__call__, params=model.params, tx=tx)

    def train_step(state, batch, dropout_rng):
        dropout_rng, new_dropout_rng = jax.random.split(dropout_rng)

        def loss_fn(params):
            labels = batch["labels"]
            inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            out = state.apply_fn(*inputs, params=params, dropout_rng=dropout_rng, train=True)
            logits, pair_logits = out[0], out[1]
            label_mask = jnp.where(labels > 0, 1.0, 0.0)
            loss = (
                optax.softmax_cross_entropy(logits, common_utils.onehot(labels, logits.shape[-1]))
                * label_mask
            )
            loss = loss.sum() / label_mask.sum()
            nsp = optax.softmax_cross_entropy_with_integer_labels(pair_logits, batch["next_sentence_label"])
            return loss + nsp.mean()

        loss, grad = jax.value_and_grad(loss_fn)(state.params)
        grad = jax.lax.pmean(grad, "batch")
        new_state = state.apply_gradients(grads=grad)
        metrics = jax.lax.pmean({"loss": loss, "learning_rate": schedule(state.step)}, axis_name="batch")
        return new_state, metrics, new_dropout_rng

    p_train_step = jax.pmap(train_step, "batch", donate_argnums=(0,))
    n = jax.local_device_count()
    if batch_np["input_ids"].shape[0] % n:
        raise ConfigError(f"--batch_size must be divisible by the {n} local devices the reference pmaps over")
    batch = _place_per_device(
        common_utils.shard(
            {
                "input_ids": batch_np["input_ids"],
                "attention_mask": batch_np["input_mask"],
                "token_type_ids": batch_np["segment_ids"],
                "labels": reference_labels(batch_np),
                "next_sentence_label": batch_np["next_sentence_labels"],
            }
        )
    )
    holder = {"state": jax_utils.replicate(tstate), "rng": jax.random.split(jax.random.PRNGKey(seed + 1), n)}

    def advance():
        holder["state"], metrics, holder["rng"] = p_train_step(holder["state"], batch, holder["rng"])
        return holder["state"], metrics

    # pmap compiles on its first call: compile_s includes that one step.
    t0 = time.perf_counter()
    jax.block_until_ready(advance())
    compile_s = time.perf_counter() - t0
    name = f"transformers {version} FlaxBertForPreTraining (run_mlm_flax step)"
    return Runner(name, advance, compile_s, count_params(tstate.params))


def _place_per_device(tree):
    """`[devices, ...]` host arrays -> device arrays split over the local
    devices along axis 0, as pmap takes them (placed once, not per step)."""
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("devices",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


# --------------------------------------------------------------------------
# Peaks and memory.


def measure_matmul_flops(dtype: str = "float32", n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of a jitted `[n, n] @ [n, n]` on the default device."""
    x = jnp.ones((n, n), getattr(jnp, dtype))
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(x))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(x))
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def device_peak_flops(device, dtype: str) -> tuple[float, str]:
    """Peak FLOP/s of one device and where the number comes from.

    Accelerators: the chip's published dense bf16 peak (the table `bert-jax
    compile` uses), whatever the bench dtype. CPU: measured,
    the best of a few large matmuls in `dtype` on this process's threads.
    """
    if device.platform != "cpu":
        for chip in CHIPS.values():
            if device.device_kind.startswith(chip.device_kind):
                return chip.peak_bf16_flops, f"published dense bf16 peak of {chip.device_kind}"
        return 0.0, f"unknown peak for {device.device_kind!r} (no entry in bert_jax.compile.topologies.CHIPS)"
    return measure_matmul_flops(dtype), f"measured: best jitted {dtype} 2048x2048 matmul on this CPU"


def peak_memory(device) -> tuple[int, str]:
    """Peak bytes in use on `device`, or (CPU: no device stats) this
    process's maximum resident set size, with a label saying which."""
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device.memory_stats()['peak_bytes_in_use']"
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return max_rss, "process max RSS (no device memory stats)"


def allocator_env() -> str:
    """The allocator setting this process runs with (it moves XLA CPU times)."""
    parts = [f"{k}={os.environ[k]}" for k in ("LD_PRELOAD", "GLIBC_TUNABLES") if os.environ.get(k)]
    return " ".join(parts) or "glibc malloc (default)"


# --------------------------------------------------------------------------
# The measurement.


def interleave(runners: list[Runner], steps: int, rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Warm each runner up, then `rounds` rounds of `ceil(steps / rounds)`
    timed steps per runner, in turn. Returns every step time (ms) by name."""
    for r in runners:
        r.time_steps(warmup)
    per_round = -(-steps // rounds)
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(rounds):
        for r in runners:
            times[r.name].extend(r.time_steps(per_round))
    return times


def summarise(times_ms: list[float], shape: StepShape, step_flops: float, peak: float) -> dict[str, float]:
    """Median step time and the throughputs it implies."""
    ms = statistics.median(times_ms)
    tflops = step_flops / (ms / 1e3) / 1e12
    return {
        "step_ms": ms,
        "step_ms_min": min(times_ms),
        "step_ms_max": max(times_ms),
        "examples_per_s": shape.batch_size / (ms / 1e3),
        "tokens_per_s": shape.batch_size * shape.seq_len / (ms / 1e3),
        "model_tflops_per_s": tflops,
        "mfu": tflops * 1e12 / peak if peak else None,
    }


def run_bench(
    config: ml_collections.ConfigDict,
    *,
    batch_size: int,
    seq_len: int,
    steps: int,
    dtype: str = "",
    max_predictions: int = 0,
    compare: bool = False,
    rounds: int = 0,
    warmup: int = 2,
    config_name: str = "",
) -> dict[str, Any]:
    """Times our train step (and with `compare` the reference's) and returns
    the result record `bert-jax bench` prints as one JSON line."""
    if steps < 1:
        raise ConfigError(f"--steps={steps} must be >= 1")
    config, shape = resolve_config(config, batch_size, seq_len, max_predictions, dtype)
    model_cfg = model_config(config)
    rounds = rounds or (5 if compare else 1)
    rounds = min(rounds, steps)
    batch_np = synthetic_batch(shape, model_cfg.vocab_size, config.seed)
    devices = jax.devices()
    step_flops = flops.train_step_flops(model_cfg, shape.batch_size, shape.seq_len, shape.max_predictions)
    peak, peak_source = device_peak_flops(devices[0], model_cfg.dtype)
    if devices[0].platform != "cpu":
        peak *= len(devices)  # CPU "devices" share one host's cores, measured together

    ours = build_ours(config, batch_np)
    ours.time_steps(warmup)
    memory, memory_source = peak_memory(devices[0])
    runners = [ours]
    if compare:
        runners.append(build_reference(config, batch_np, int(config.seed)))
    times = interleave(runners, steps, rounds, warmup=0 if not compare else warmup)

    record: dict[str, Any] = {
        "config": config_name,
        "device": devices[0].device_kind,
        "platform": devices[0].platform,
        "num_devices": len(devices),
        "jax_version": jax.__version__,
        "flax_version": importlib.metadata.version("flax"),
        "dtype": model_cfg.dtype,
        "batch_size": shape.batch_size,
        "seq_len": shape.seq_len,
        "max_predictions": shape.max_predictions,
        "num_params": ours.num_params,
        "steps": len(times[ours.name]),
        "rounds": rounds,
        "compile_s": ours.compile_s,
        **summarise(times[ours.name], shape, step_flops, peak),
        "model_flops_per_step": step_flops,
        "peak_flops": peak,
        "peak_flops_source": peak_source,
        "peak_device_memory_bytes": memory,
        "memory_source": memory_source,
        "allocator": allocator_env(),
    }
    if compare:
        ref = runners[1]
        record["reference"] = {
            "impl": ref.name,
            "compile_s": ref.compile_s,
            **summarise(times[ref.name], shape, step_flops, peak),
        }
        record["ratio_to_reference"] = record["examples_per_s"] / record["reference"]["examples_per_s"]
    return record
