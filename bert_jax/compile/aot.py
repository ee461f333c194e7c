"""The pre-training step compiled ahead of time for a topology this machine
does not have: per-chip memory against HBM, FLOPs, a calibrated step-time
prediction (`bert_jax.compile.calibrated`) and the raw roofline (`roofline_*`).

It builds what pretrain runs (the mesh from `bert_jax.train.sharding`, the
abstract sharded state from `bert_jax.train.state`, the jitted step from
`bert_jax.train.step`) over the compile-only devices of the topology, lowers
it with `jax.ShapeDtypeStruct` inputs carrying their shardings (nothing is
allocated) and compiles it. Memory comes from `compiled.memory_analysis()`,
FLOPs from `compiled.cost_analysis()`. XLA's GPU compiler counts no FLOPs, so
for GPU topologies the same program is compiled for as many CPU devices and
its count is used (`flops_source` says which).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.extend import core as jax_core

from bert_jax import flops as analytic_flops
from bert_jax.compile import calibrated, roofline
from bert_jax.compile.topologies import GIB, Topology, compile_only_devices
from bert_jax.config import model_config, resolve_config
from bert_jax.errors import UserError
from bert_jax.train import optim, sharding, state, step

# The three layouts --compare_parallelism compiles; -1 takes the rest.
PARALLELISMS = {
    "DP": {"data": -1, "fsdp": 1, "tensor": 1},
    "FSDP": {"data": 1, "fsdp": -1, "tensor": 1},
    "DPxTP": {"data": -1, "fsdp": 1, "tensor": 4},
}


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """The jitted train step and its abstract arguments (with shardings)."""

    train_step: Any
    state: Any
    batch: dict[str, jax.ShapeDtypeStruct]
    rng: jax.ShapeDtypeStruct
    mesh: jax.sharding.Mesh


def resolve(config: ml_collections.ConfigDict, global_batch: int = 0, seq_len: int = 0):
    """A copy of `config` with --global_batch / --seq_len applied as bench
    applies its flags (BERT's masked positions for the length; phases ignored)."""
    config, _ = resolve_config(
        config, global_batch or config.batch_size, seq_len or config.data.max_seq_length
    )
    return config


def abstract_batch(config, batch_sharding) -> dict[str, jax.ShapeDtypeStruct]:
    """The pre-training batch (docs/design.md) as shapes: `[batch, seq]` ids and
    masks, `[batch, max_predictions]` MLM targets, `[batch]` pair labels."""
    b, s, p = config.batch_size, config.data.max_seq_length, config.data.max_predictions_per_seq
    shapes = {
        "input_ids": ((b, s), jnp.int32),
        "input_mask": ((b, s), jnp.int32),
        "segment_ids": ((b, s), jnp.int32),
        "masked_lm_positions": ((b, p), jnp.int32),
        "masked_lm_ids": ((b, p), jnp.int32),
        "masked_lm_weights": ((b, p), jnp.float32),
        "next_sentence_labels": ((b,), jnp.int32),
    }
    return {k: jax.ShapeDtypeStruct(shape, dt, sharding=batch_sharding) for k, (shape, dt) in shapes.items()}


def build_program(config, devices) -> TrainProgram:
    """pretrain's mesh, state and step over `devices`, all abstract."""
    mesh = sharding.make_mesh(config.mesh, devices=devices)
    rules = sharding.rules_of(config.mesh)
    accum = config.optimizer.grad_accum_steps
    sharding.check_batch_size(config.batch_size, mesh, accum, key="--global_batch")
    model_cfg = model_config(config)
    optimizer = optim.make_optimizer(config.optimizer, config.total_steps)
    abstract, state_shardings = state.abstract_state(
        model_cfg, optimizer, mesh, config.data.max_seq_length, config.data.max_predictions_per_seq, rules
    )
    train_step = step.make_train_step(model_cfg, optimizer, mesh, state_shardings, accum_steps=accum, rules=rules)
    batch = abstract_batch(config, sharding.batch_sharding(mesh))
    # The run's base key: raw uint32[2] key data, replicated.
    rng = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=sharding.replicated(mesh))
    return TrainProgram(train_step, abstract, batch, rng, mesh)


def _shard_bytes(tree) -> int:
    """Bytes one device holds of an abstract tree (largest shard per leaf)."""
    total = 0
    for leaf in jax.tree_util.tree_leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if getattr(leaf, "sharding", None) else leaf.shape
        total += int(np.prod(shape, dtype=np.int64)) * jnp.dtype(leaf.dtype).itemsize
    return total


def _total_bytes(tree) -> int:
    return sum(
        int(np.prod(x.shape, dtype=np.int64)) * jnp.dtype(x.dtype).itemsize
        for x in jax.tree_util.tree_leaves(tree)
    )


# libtpu's two wordings: "... required for HLO temporaries (71.99G) exceeds
# available HBM (30.75G)" and "Used 40.5G of 30.75G hbm".
_OOM_RES = (
    re.compile(r"\(([\d.]+)([KMGT]?)\)\s+exceeds available HBM\s+\(([\d.]+)([KMGT]?)\)"),
    re.compile(r"[Uu]sed\s+([\d.]+)([KMGT]?)\s+of\s+([\d.]+)([KMGT]?)\s+hbm"),
)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class OutOfMemory(Exception):
    """The compiler refused the program for lack of device memory: HBM, or
    `space="vmem"`, a TPU core's on-chip scratch (16 MiB on a v4), which a
    kernel's tiling for one batch shape can overrun while the next batch
    size up compiles: not a bound on the batch."""

    def __init__(self, needed: int | None, available: int | None, message: str, space: str = "hbm"):
        super().__init__(message)
        self.needed, self.available, self.space = needed, available, space


# "Ran out of memory in memory space vmem. Used 19.70M of 16.00M vmem."
_VMEM = re.compile(r"memory space vmem|of [\d.]+[KMGT]? vmem", re.I)


# The deviceless GPU compile's Triton GEMM autotuner fails this way on some
# matmul shapes (ModernBERT-base's last layer at 1,024 tokens on h100x8).
_TRITON_TILING = "Couldn't find output tile sizes"


def _compile(program: TrainProgram):
    """Lower and compile; a compile refused for memory becomes OutOfMemory."""
    lowered = program.train_step.lower(program.state, program.batch, program.rng)
    try:
        return lowered.compile()
    except jax.errors.JaxRuntimeError as e:
        text = str(e)
        if _TRITON_TILING in text:
            raise UserError(
                f"XLA's GPU compiler found no Triton GEMM tiling for a matmul of this program "
                f"({text.splitlines()[0][:160]}...); compile with cuBLAS GEMMs instead: "
                "XLA_FLAGS=--xla_gpu_enable_triton_gemm=false bert-jax compile ..."
            ) from None
        if "RESOURCE_EXHAUSTED" not in text and "out of memory" not in text.lower():
            raise
        m = next((m for m in (r.search(text) for r in _OOM_RES) if m), None)
        if not m and _VMEM.search(text):
            raise OutOfMemory(None, None, text.splitlines()[0], space="vmem") from e
        if not m:
            raise OutOfMemory(None, None, text.splitlines()[0]) from e
        needed = int(float(m.group(1)) * _UNITS[m.group(2)])
        available = int(float(m.group(3)) * _UNITS[m.group(4)])
        raise OutOfMemory(needed, available, text.splitlines()[0]) from e


def _cost(compiled) -> dict:
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older jax: one dict per program
        cost = cost[0] if cost else None
    return cost or {}


def _cpu_cost(config, num_devices: int) -> dict | None:
    """cost_analysis of the same program compiled for `num_devices` CPU devices,
    or None when this process has fewer."""
    cpus = jax.devices("cpu")
    if len(cpus) < num_devices:
        return None
    return _cost(_compile(build_program(config, cpus[:num_devices])))


def matmul_flops(closed_jaxpr, loop_bodies_once: bool = False) -> float:
    """FLOPs of every dot_general in a traced program (global shapes, forward,
    backward and any rematerialised recomputation): 2 x output size x the
    contracted size. The part of XLA's count the analytic formula models;
    elementwise work (GELU, LayerNorm, softmax, the optimizer update) is not in it.
    loop_bodies_once: count a scan's body once, as XLA's cost analysis does."""
    total = 0.0
    for eqn in closed_jaxpr.jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            out = eqn.outvars[0].aval.shape
            total += 2.0 * float(np.prod(out)) * float(np.prod([lhs[i] for i in contract]))
        scanned = eqn.primitive.name == "scan" and not loop_bodies_once
        repeat = eqn.params.get("length", 1) if scanned else 1
        for sub in jax_core.jaxprs_in_params(eqn.params):
            total += repeat * matmul_flops(jax_core.ClosedJaxpr(sub, ()), loop_bodies_once)
    return total


def program_matmul_flops(program: TrainProgram) -> tuple[float, float]:
    """matmul_flops of the whole train step, for all devices together: every
    iteration of scanned layers, and their body once (what XLA counts)."""
    traced = program.train_step.trace(program.state, program.batch, program.rng)
    return matmul_flops(traced.jaxpr), matmul_flops(traced.jaxpr, loop_bodies_once=True)


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def compile_for_topology(config, topology: Topology, devices=None, cpu_flops: bool = True) -> dict:
    """Compiles pretrain's step for `topology` and reports on it (a JSON-able dict).

    `config` is already resolved (batch, seq_len, mesh). Never raises for
    memory: a program that does not fit is reported with `fits: false`.
    cpu_flops=False skips the CPU compile that counts a GPU program's FLOPs
    (the analytic count stands in, and `flops_source` says so).
    """
    devices = compile_only_devices(topology) if devices is None else devices
    program = build_program(config, devices)
    mesh_shape = dict(program.mesh.shape)
    hbm = topology.chip.hbm_bytes
    report: dict[str, Any] = {
        "topology": topology.name,
        "platform": topology.platform,
        "chip": topology.chip.device_kind,
        "num_devices": topology.num_devices,
        "num_slices": topology.num_slices,
        "global_batch": config.batch_size,
        "seq_len": config.data.max_seq_length,
        "max_predictions": config.data.max_predictions_per_seq,
        "mesh": mesh_shape,
        "hbm_bytes_per_chip": hbm,
        "arguments_per_chip": {
            "params": _shard_bytes(program.state.params),
            "opt_state": _shard_bytes(program.state.opt_state),
            "batch": _shard_bytes(program.batch),
        },
    }
    try:
        compiled = _compile(program)
    except OutOfMemory as e:
        # libtpu refused it: its own figures (what it needs, what it can give).
        report.update(fits=False, bytes_per_chip=e.needed, compiler_message=str(e))
        if e.space == "vmem":
            report["memory_space"] = "vmem"
            report["status"] = ("not compiled: the TPU compiler ran out of on-chip vector memory (VMEM) for "
                                "this batch shape, not of HBM; try a neighbouring --global_batch")
            return report
        if e.available:
            report["compiler_hbm_bytes"] = e.available
        report["status"] = _status(False, e.needed, e.available or hbm)
        return report

    mem = compiled.memory_analysis()
    used = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    fits = used <= hbm
    report.update(
        fits=fits,
        status=_status(fits, used, hbm),
        bytes_per_chip=int(used),
        memory_per_chip={
            "arguments": int(mem.argument_size_in_bytes),
            "outputs": int(mem.output_size_in_bytes),
            "temporaries": int(mem.temp_size_in_bytes),
            "aliased": int(mem.alias_size_in_bytes),
            "generated_code": int(mem.generated_code_size_in_bytes),
        },
    )
    fused = fused_attention_calls(compiled.as_text())
    report.update(_flops_and_prediction(config, topology, program, compiled, cpu_flops, fused))
    report["fused_attention_calls"] = fused
    return report


def fused_attention_layers(calls: dict[str, int], num_layers: int, scanned: bool) -> int:
    """Encoder layers whose attention runs in a fused kernel: one forward call
    each (a scanned program has one, in the loop body, for all of them)."""
    forward = sum(n for name, n in calls.items() if name.startswith("splash_mha_fwd") or (
        name.startswith("__cudnn$fmha") and "Backward" not in name))
    if forward == 0:
        return 0
    return num_layers if scanned else min(forward, num_layers)


def fused_attention_flops(model_cfg, batch: int, seq_len: int, fused_layers: int) -> float:
    """Training-step FLOPs (3x forward) of scores and context in the first
    `fused_layers` layers, which the traced matmuls miss (a fused kernel is one
    custom call; of a Pallas kernel only its block-sized body is traced, a
    negligible part): `4*B*L*K*H` forward per layer, `K` the mean keys a query
    attends to (`bert_jax.flops.mean_keys_per_query`; the model's maths: cuDNN
    given the window as a bias mask computes all `L` keys, so this is low there)."""
    total = 0.0
    for i in range(fused_layers):
        window = model_cfg.local_attention if model_cfg.layer_is_local(i) else 0
        keys = analytic_flops.mean_keys_per_query(seq_len, window)
        total += 3 * 4 * batch * seq_len * keys * model_cfg.hidden_size
    return total


# How the fused attention kernels appear in a compiled program's text: cuDNN's
# as custom calls `__cudnn$fmha...` (forward, backward), the Pallas splash
# kernel as `tpu_custom_call`s whose kernel names start `splash_mha_`.
_CUSTOM_CALL_RE = re.compile(r'custom_call_target="([^"]+)"')
_SPLASH_NAME_RE = re.compile(r"splash_mha_[a-z_]+")


def fused_attention_calls(hlo_text: str) -> dict[str, int]:
    """{kernel: number of calls} of the fused attention kernels in a compiled
    program's text (`compiled.as_text()`), one per custom-call instruction;
    {} where attention is XLA's own ops."""
    found: dict[str, int] = {}
    for line in hlo_text.splitlines():
        target = _CUSTOM_CALL_RE.search(line)
        if target is None:
            continue
        name = target.group(1)
        if name == "tpu_custom_call":
            splash = _SPLASH_NAME_RE.search(line)
            name = splash.group(0) if splash else ""
        if name.startswith(("__cudnn$fmha", "splash_mha_")):
            found[name] = found.get(name, 0) + 1
    return dict(sorted(found.items()))


def _status(fits: bool, needed: int | None, available: int) -> str:
    if fits:
        return "fits"
    if needed is None:
        return f"does not fit in {gib(available)}"
    return f"does not fit: needs {gib(needed)} of {gib(available)}"


def _flops_and_prediction(
    config, topology: Topology, program: TrainProgram, compiled, cpu_flops: bool, fused: dict[str, int]
) -> dict:
    cost = _cost(compiled)
    source = f"xla:{topology.platform}"
    if "flops" not in cost and cpu_flops:
        cost = _cpu_cost(config, topology.num_devices) or {}
        source = f"xla:cpu (the same program for {topology.num_devices} CPU devices)"
    model_cfg = model_config(config)
    analytic = analytic_flops.train_step_flops(
        model_cfg, config.batch_size, config.data.max_seq_length, config.data.max_predictions_per_seq
    )
    matmuls, matmuls_once = program_matmul_flops(program)
    # XLA's cost analysis counts a while loop's body once: with scanned layers
    # its FLOPs are those of one layer plus the rest. Scale them by the traced
    # matmuls' ratio (every layer / the body once), as if each layer added
    # what the first does; 1 for unrolled layers. Bytes are left as counted
    # (a lower bound): most of them lie outside the loop (the optimizer's
    # pass over every parameter), so scaling them would be far worse.
    loop_scale = matmuls / matmuls_once if matmuls_once else 1.0
    if "flops" in cost:
        flops_per_chip = float(cost["flops"]) * loop_scale
        bytes_accessed = float(cost.get("bytes accessed", 0.0))
        if flops_per_chip < matmuls / topology.num_devices:
            # The program must do at least its traced matmuls; libtpu's count
            # of some scanned, sharded programs (v5p, v6e) falls below them,
            # which would put the roofline above 100% MFU. Floor it there.
            source += f" (its count, {flops_per_chip:.4g}, is below the traced matmuls: floored at them)"
            flops_per_chip = matmuls / topology.num_devices
    else:
        flops_per_chip = analytic / topology.num_devices
        bytes_accessed = float(_shard_bytes(program.state)) * 2
        why = "too few CPU devices in this process to count with XLA" if cpu_flops else "not counted"
        source = f"analytic (bert_jax.flops; {why})"
    mesh = program.mesh.shape
    par = roofline.Parallelism(mesh["data"], mesh["fsdp"], mesh["tensor"], topology.num_slices)
    local_batch = config.batch_size / (par.data * par.fsdp)
    act = (
        local_batch
        * config.data.max_seq_length
        * model_cfg.hidden_size
        * jnp.dtype(model_cfg.compute_dtype).itemsize
    )
    param_bytes = _total_bytes(program.state.params)
    comm = roofline.collective_bytes(par, param_bytes, act, model_cfg.num_layers)
    tokens = config.batch_size * config.data.max_seq_length
    roof = roofline.predict(
        topology.chip, topology.num_devices, flops_per_chip, bytes_accessed, comm, tokens, analytic
    )
    # A fused kernel keeps its layer's scores on chip (no score traffic) and
    # hides its matmuls from the traced count (added back analytically).
    fused_layers = fused_attention_layers(fused, model_cfg.num_layers, model_cfg.scan_layers)
    fused_flops = fused_attention_flops(model_cfg, config.batch_size, config.data.max_seq_length, fused_layers)
    work = calibrated.Workload(
        num_chips=topology.num_devices,
        matmul_flops=(matmuls + fused_flops) / topology.num_devices,
        activation_elements=tokens / topology.num_devices * model_cfg.num_layers * model_cfg.hidden_size,
        score_elements=tokens / topology.num_devices * (model_cfg.num_layers - fused_layers)
        * model_cfg.num_heads * config.data.max_seq_length,
        activation_itemsize=jnp.dtype(model_cfg.compute_dtype).itemsize,
        # The update runs on each chip's shard: all of it under pure data parallelism.
        param_bytes=param_bytes / (par.fsdp * par.tensor),
        accum_steps=int(config.optimizer.get("grad_accum_steps", 1)),
        collectives=comm,
        model_flops=analytic,
        tokens=tokens,
    )
    pred = calibrated.predict(topology.chip, work)
    seq = config.data.max_seq_length
    return {
        "flops_per_step_per_chip": flops_per_chip,
        "flops_source": source,
        "analytic_flops_per_step": analytic,
        # XLA's count also has the elementwise work and, under data
        # parallelism, the optimizer update replicated on every chip.
        "xla_flops_over_analytic": flops_per_chip * topology.num_devices / analytic,
        "matmul_flops_per_step": matmuls,
        "fused_attention_layers": fused_layers,
        "fused_attention_flops_per_step": fused_flops,
        "xla_loop_scale": loop_scale,
        "hbm_bytes_accessed_per_chip": bytes_accessed,
        "collective_bytes_per_chip": {"ici": comm.ici, "dcn": comm.dcn},
        # The calibrated prediction (bert_jax.compile.calibrated): what to plan with.
        "prediction": {
            "kind": "calibrated prediction (matmuls at a measured fraction of peak + memory-bound "
            "elementwise and optimizer work + collectives), not a measurement",
            "matmul_efficiency": calibrated.MATMUL_EFFICIENCY,
            **dataclasses.asdict(pred),
        },
        "predicted_step_s": pred.step_s,
        "predicted_tokens_per_s": pred.tokens_per_s,
        "predicted_sequences_per_s": pred.tokens_per_s / seq,
        "predicted_mfu": pred.mfu,
        # The raw roofline from published peaks: an upper bound on throughput.
        "roofline_prediction": {"kind": "roofline prediction, not a measurement", **dataclasses.asdict(roof)},
        "roofline_step_s": roof.step_s,
        "roofline_tokens_per_s": roof.tokens_per_s,
        "roofline_sequences_per_s": roof.tokens_per_s / seq,
        "roofline_mfu": roof.mfu,
    }


def with_mesh(config, mesh: dict) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(config.to_dict())
    config.mesh.update(mesh)
    return config


def batch_unit(config, num_devices: int) -> int:
    """The global batch must be a multiple of this: the data-parallel devices
    (data x fsdp) times the gradient-accumulation steps. ConfigError for a
    mesh that does not divide the devices."""
    data, fsdp, _ = sharding.mesh_shape(config.mesh, num_devices)
    return data * fsdp * config.optimizer.grad_accum_steps


MAX_GROWTH = 32


def _line_guess(probes: dict[int, dict], a: int, b: int, target: float) -> int | None:
    """Where the line through probes `a` and `b` (batch units -> bytes per
    chip) meets `target`; None without two memory figures or a rising line."""
    ua, ub = probes[a].get("bytes_per_chip"), probes[b].get("bytes_per_chip")
    if not ua or not ub or ub <= ua:
        return None
    slope = (ub - ua) / (b - a)  # bytes per chip per batch unit
    return int(a + (target - ua) // slope)


def _fit_next(probes: dict[int, dict], hbm: int, lo: int, hi: int | None, max_n: int,
              order: list[int] | None = None) -> int:
    """The next batch (in data-parallel units) to try, strictly between the
    largest that fits (`lo`) and the smallest that does not (`hi`).

    Memory is nearly linear in the batch, so the guess is where a line meets
    98% of the HBM: before any miss, the line through the two largest probes;
    after one, the line through the bracket's ends. Where memory is not a line
    (a compiler that switches strategy), such guesses creep: two misses in a
    row, or two fits in a row that each gained at most two units, mean the
    line is misleading here, and the next probe halves the bracket instead
    (before any miss: aims at the HBM itself, at least twice the last gain
    up). Once the largest fit is within 4% of the HBM the line aims at the HBM
    itself, never halves, and at least one unit up: the answer is a unit or a
    few away, and 98% would guess at or below that fit (the search crept a
    unit a compile there). `order`: the probes in the order they were compiled."""
    # Aim 2% below the limit: memory is nearly linear, and aiming at the limit
    # itself misses by megabytes about half the time.
    near = (probes[lo].get("bytes_per_chip") or 0) >= 0.96 * hbm
    target = hbm if near else 0.98 * hbm
    if hi is None:
        known = sorted(n for n, r in probes.items() if r.get("bytes_per_chip"))
        if len(known) < 2:
            return min(2 * lo, max_n)
        creeping = _creeping(probes, order or [], max_n - lo)
        # Fits creeping up just under 98%: aim at the limit itself, and at
        # least twice the last gain above the largest fit.
        guess = _line_guess(probes, known[-2], known[-1], hbm if creeping else target)
        guess = max_n if guess is None else guess
        if creeping and not near:
            guess = max(guess, lo + 2 * (known[-1] - known[-2]))
        # Extrapolating from small batches, where fixed buffers hide the slope
        # (a data x tensor mesh can show none between 1 and 8 units): grow at
        # most 32x a step, so a miss far above the answer does not cost the
        # compiles that would have found it.
        return max(lo + 1, min(guess, MAX_GROWTH * lo, max_n))
    if not near and _creeping(probes, order or [], hi - lo):
        return (lo + hi) // 2
    guess = _line_guess(probes, lo, hi, target)
    guess = (lo + hi) // 2 if guess is None else guess
    return max(lo + 1, min(guess, hi - 1))


def _creeping(probes: dict[int, dict], order: list[int], bracket: int) -> bool:
    """True when the last two probes fell on the same side of the answer
    without closing in on it: two misses, or two fits each at most two units
    above the fit before, in a bracket still wider than two units."""
    if len(order) < 3 or bracket <= 2:
        return False
    a, b = order[-2], order[-1]
    fits_a, fits_b = probes[a]["fits"], probes[b]["fits"]
    if not fits_a and not fits_b:
        return True
    if fits_a and fits_b:
        earlier = [n for n in order[:-2] if probes[n]["fits"]]
        return bool(earlier) and a - max(earlier) <= 2 and b - a <= 2
    return False


def find_max_batch(
    config, topology: Topology, devices=None, limit: int = 1 << 16, max_compiles: int = 6
) -> tuple[int, dict | None]:
    """Largest global batch (a multiple of the data-parallel size) that fits,
    from a linear fit of memory in the batch: memory per chip = a + b x batch
    (the state is fixed, activations grow with the batch). Compiles 1 and 8
    units, predicts where the line meets the chip's HBM, compiles there, and
    narrows the bracket (`_fit_next`) until the batch that fits and the next
    one that does not are adjacent, or `max_compiles` is spent (then the
    largest verified to fit). (0, None) if even one example per data-parallel
    rank does not fit. A batch whose compile overran VMEM (a kernel's tiling
    for that shape) bounds nothing: the search goes on from the unit below
    it, or, at the first probe, the unit above. The returned report carries
    `batch_search`: every probe as (global batch, bytes per chip, fits, and
    `memory_space: "vmem"` for such a probe), and `max_batch_proven` (the next unit up was compiled and did not
    fit, the units between overran VMEM, or the limit was reached)."""
    devices = compile_only_devices(topology) if devices is None else devices
    unit = batch_unit(config, len(devices))
    max_n = max(limit // unit, 1)
    hbm = compiler_hbm = topology.chip.hbm_bytes
    probes: dict[int, dict] = {}

    def attempt(n: int) -> dict:
        # A GPU program's FLOPs take a CPU compile: only the answer's are counted.
        batch_config = resolve(config, global_batch=n * unit)
        probes[n] = compile_for_topology(batch_config, topology, devices, cpu_flops=False)
        return probes[n]

    first = 1
    while _vmem(attempt(first)) and first < min(max_n, max_compiles):
        first += 1  # that shape's tiling overran VMEM, which bounds nothing: the unit above
    if not probes[first]["fits"]:
        return 0, None
    lo, hi, order = first, None, [first]
    nxt = min(max(8, 2 * first), max_n)
    while len(probes) < max_compiles and lo < max_n and (hi is None or hi - lo > 1):
        while _vmem(probes.get(nxt)) and nxt < max_n and (hi is None or nxt + 1 < hi):
            nxt += 1  # the guess's shape overran VMEM before: the unit above
        if nxt in probes:
            break
        r = attempt(nxt)
        if _vmem(r):
            # A kernel's tiling for this shape, not the batch's memory: no
            # bound. The unit below has other shapes; the search goes on from it.
            nxt -= 1
            if nxt <= lo:
                break
            continue
        if r["fits"]:
            lo = nxt
        else:
            hi = nxt
            # libtpu refuses above its own limit (30.75 of a v4's 32 GiB): aim there.
            compiler_hbm = min(compiler_hbm, r.get("compiler_hbm_bytes") or compiler_hbm)
        order.append(nxt)
        nxt = _fit_next(probes, _aim(hbm, compiler_hbm, probes[lo].get("bytes_per_chip")), lo, hi, max_n, order)
    report = dict(probes[lo])
    if report.get("flops_source", "").startswith("analytic") and len(jax.devices("cpu")) >= len(devices):
        report = compile_for_topology(resolve(config, global_batch=lo * unit), topology, devices)
    report["batch_search"] = [
        {"global_batch": n * unit, "bytes_per_chip": probes[n].get("bytes_per_chip"), "fits": probes[n]["fits"],
         **({"memory_space": "vmem"} if probes[n].get("memory_space") == "vmem" else {})}
        for n in sorted(probes)
    ]
    # Proven: every unit between the answer and the smallest miss was
    # compiled (and overran VMEM).
    report["max_batch_proven"] = lo >= max_n or (hi is not None and all(n in probes for n in range(lo + 1, hi)))
    return lo * unit, report


def _aim(hbm: int, compiler_hbm: int, largest_fit_bytes: int | None) -> int:
    """The memory per chip the search aims under: the compiler's own limit
    where a miss gave one (libtpu: 30.75 of a v4's 32 GiB), unless a batch
    that fits already uses 98% of it. libtpu's figure counts its temporaries,
    ours the whole program (arguments too), so such fits are common near the
    top (bert_large seq 128 on a v4-8: 31.45 GiB fits against "30.75G
    available"); aiming under the compiler's figure then guesses at or
    below the largest fit every time, and the search creeps up a unit a
    compile. Then aim at the chip's HBM."""
    if largest_fit_bytes and largest_fit_bytes >= 0.98 * compiler_hbm:
        return hbm
    return compiler_hbm


def _vmem(probe: dict | None) -> bool:
    """Whether a probe's compile overran VMEM (see OutOfMemory)."""
    return probe is not None and probe.get("memory_space") == "vmem"


def compare_parallelism(config, topology: Topology, devices=None) -> dict[str, dict]:
    """DP, FSDP and DPxTP compiled for the same model and batch."""
    devices = compile_only_devices(topology) if devices is None else devices
    out = {}
    for name, mesh in PARALLELISMS.items():
        if mesh["tensor"] > 1 and len(devices) % mesh["tensor"]:
            continue
        out[name] = compile_for_topology(with_mesh(config, mesh), topology, devices)
    return out
