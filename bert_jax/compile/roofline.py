"""A predicted step time from a chip's published peaks: a roofline, not a
measurement, and an upper bound on throughput (the calibrated prediction a
user can plan with is `bert_jax.compile.calibrated`; this module's
`collective_bytes` and `collective_seconds` are shared by both).

    step = max(FLOPs / peak FLOP/s, HBM bytes / HBM bandwidth) + collective time

Compute and memory overlap perfectly in this model; collectives overlap with
nothing (pessimistic for well-scheduled FSDP, optimistic for everything else
a real step pays: input feed, host overheads, imperfect kernels).

Collective bytes are estimated from the parameter and activation sizes and
the mesh (ring algorithms; bytes each chip sends):
* data parallel (size d): all-reduce of each chip's gradient shard,
  2 (d-1)/d x grad bytes;
* FSDP (size f): all-gather of the parameters in the forward and again in the
  backward pass, reduce-scatter of the gradients, 3 (f-1)/f x parameter bytes;
* tensor parallel (size t, Megatron): two all-reduces of the `[batch, seq,
  hidden]` activations per layer forward, two more backward,
  4 x layers x 2 (t-1)/t x activation bytes.
A chip sends over all its links at once, so it moves bytes at half its
bidirectional ICI / NVLink figure. With several slices (hosts), the data axis
spans them; its all-reduce crosses DCN (InfiniBand) once per slice.
"""

from __future__ import annotations

import dataclasses

from bert_jax.compile.topologies import ChipSpec


@dataclasses.dataclass(frozen=True)
class Parallelism:
    """Mesh axis sizes; data x fsdp x tensor = devices. `slices` of them split
    the data axis (multi-slice TPU or several GPU hosts)."""

    data: int
    fsdp: int
    tensor: int
    slices: int = 1


@dataclasses.dataclass(frozen=True)
class CollectiveBytes:
    """Bytes each chip sends per step, by where they travel."""

    ici: float  # within a slice / host (ICI, NVLink)
    dcn: float  # between slices / hosts (DCN, InfiniBand)


def _ring(n: int) -> float:
    """Bytes a chip sends per byte of an all-reduce's input over n chips
    (reduce-scatter + all-gather); half of it for either alone."""
    return 2.0 * (n - 1) / n if n > 1 else 0.0


def collective_bytes(
    p: Parallelism,
    param_bytes: float,
    activation_bytes_per_layer: float,
    num_layers: int,
) -> CollectiveBytes:
    """Per-chip bytes sent in one training step.

    param_bytes: all parameters (= all gradients), bytes. activation_bytes_per_layer:
    one `[batch, seq, hidden]` activation of the chip's batch shard in the compute dtype.
    """
    shard = param_bytes / (p.fsdp * p.tensor)  # what each chip holds of params/grads
    fsdp = 1.5 * _ring(p.fsdp) * param_bytes / p.tensor  # 2 all-gathers + 1 reduce-scatter
    tensor = 4 * num_layers * _ring(p.tensor) * activation_bytes_per_layer
    in_slice = max(p.data // p.slices, 1)
    data_ici = _ring(in_slice) * shard
    # Hierarchical all-reduce: what is left after the in-slice reduce-scatter
    # crosses the slices.
    data_dcn = _ring(p.slices) * shard / in_slice
    return CollectiveBytes(ici=fsdp + tensor + data_ici, dcn=data_dcn)


def collective_seconds(chip: ChipSpec, collectives: CollectiveBytes) -> float:
    """Time to send `collectives`: ICI / NVLink bytes at half the
    bidirectional figure (a chip sends over all its links at once), DCN /
    InfiniBand bytes at the per-chip figure; not overlapped with anything."""
    return collectives.ici / (chip.ici_bytes_per_s / 2) + collectives.dcn / chip.dcn_bytes_per_s


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Roofline prediction for one step; times in seconds."""

    compute_s: float
    memory_s: float
    collective_s: float
    step_s: float
    tokens_per_s: float
    mfu: float  # model FLOPs / (chips x peak x step time)


def rates(
    chip: ChipSpec, num_chips: int, step_s: float, tokens: int, model_flops: float
) -> tuple[float, float]:
    """Tokens/s and MFU (model FLOPs / (chips x peak x step time)) of a step
    of `step_s` seconds that trains `tokens` tokens with `model_flops` FLOPs
    (the analytic count, as bench uses); both 0 for a step that takes no time."""
    if step_s <= 0:
        return 0.0, 0.0
    return tokens / step_s, model_flops / (num_chips * chip.peak_bf16_flops * step_s)


def predict(
    chip: ChipSpec,
    num_chips: int,
    flops_per_chip: float,
    hbm_bytes_accessed_per_chip: float,
    collectives: CollectiveBytes,
    tokens_per_step: int,
    model_flops_per_step: float,
) -> Prediction:
    """Predicted step time, tokens/s and MFU from the chip's published peaks.

    flops_per_chip: what the compiled program does per chip per step (XLA's
    count). model_flops_per_step: the analytic count for the whole step, used
    for MFU as bench does.
    """
    compute = flops_per_chip / chip.peak_bf16_flops
    memory = hbm_bytes_accessed_per_chip / chip.hbm_bytes_per_s
    comm = collective_seconds(chip, collectives)
    step = max(compute, memory) + comm
    tokens_per_s, mfu = rates(chip, num_chips, step, tokens_per_step, model_flops_per_step)
    return Prediction(compute, memory, comm, step, tokens_per_s, mfu)
