"""A step-time prediction a user can plan with: the parts a roofline leaves
out, with one constant fitted to one published measurement.

    step = matmul FLOPs / (MATMUL_EFFICIENCY x peak)            # achievable, not peak
         + elementwise bytes / HBM bandwidth                     # LayerNorm, GELU, dropout, softmax
         + optimizer bytes / HBM bandwidth                       # AdamW pass, accumulation buffer
         + collective time                                       # not overlapped

Per chip, each term in seconds. The terms add: a memory-bound kernel does not
run under a matmul (they are separate kernels in a step), and the gradient
all-reduce is counted as not overlapped (`roofline.collective_seconds`).

The constants (docs/scaling.md, "Calibrated prediction"):

* MATMUL_EFFICIENCY: the fraction of the chip's dense bf16 peak the step's
  matmuls (forward, backward) run at. The only constant fitted: it is the
  value for which this model gives NVIDIA's measured 3799.24 sequences/s for
  BERT-large phase 1 (seq 128, 20 masked positions) on 8 x A100 80GB with
  TensorFlow 2 and XLA (DeepLearningExamples TensorFlow2 BERT README,
  `CALIBRATION`); `calibrate_matmul_efficiency(CALIBRATION)` recomputes it.
  An XLA-compiled program with materialised attention scores and padded
  sequences, as bert-jax's: the implementation whose work the counts below
  describe. It absorbs what is not counted (kernel launches, the matmuls'
  own operand traffic, un-fused casts), so it is lower than a large GEMM's.
* ELEMENTWISE_PASSES: reads + writes of a `[tokens, hidden]` activation per
  layer, forward and backward together, in the compute dtype. Counted, not
  fitted: forward 16 = two fused bias + dropout + residual + LayerNorm blocks
  (read the matmul output and the residual, write the result: 3 each),
  GELU over the 4H intermediate (read and write 4H: 8), the Q/K/V bias and
  head reshape (2); backward about twice the forward (the saved input and the
  incoming gradient are read, the gradient written): 3 x 16 = 48.
* SCORE_PASSES, SCORE_F32_PASSES, SCORE_MASK_PASSES: accesses of each
  `[batch, heads, seq, seq]` attention-score element per layer, forward and
  backward, by dtype. bert-jax materialises the scores whenever attention
  dropout is on (`model.attention_impl='auto'`) and takes the softmax in
  float32 (`model.SelfAttention._explicit`). Counted with XLA's kernels:
  forward, the max and the sum reductions each read the logits and the
  normalise + dropout fusion reads them again (3 compute-dtype reads), writes
  the float32 probabilities the backward needs (1 float32 write), the keep
  mask (1 one-byte write) and the dropped probabilities for the P.V matmul
  (1 compute-dtype write); backward, the softmax-gradient reduction and the
  elementwise fusion after it each read dP (2 compute-dtype reads), the
  probabilities (2 float32 reads) and the mask (2 one-byte reads), and the
  second writes dS (1 compute-dtype write). 7 compute-dtype, 3 float32 and 3
  one-byte accesses: 29 bytes an element in bf16. The random bits are taken
  as generated inside the fusion (not counted).
* OPTIMIZER_PASSES: reads + writes of the float32 parameter-sized buffers
  per step: AdamW reads parameters, gradients, both moments and writes
  parameters and both moments (7); with gradient accumulation each
  micro-batch also reads and writes the float32 gradient buffer (2 per
  micro-batch).

Memory-bound work is costed at the full published HBM bandwidth.
"""

from __future__ import annotations

import dataclasses

from bert_jax.compile import roofline
from bert_jax.compile.topologies import CHIPS, GB, GIB, ChipSpec

MATMUL_EFFICIENCY = 0.4022  # fitted: calibrate_matmul_efficiency(CALIBRATION)
ELEMENTWISE_PASSES = 48
SCORE_PASSES = 7
SCORE_F32_PASSES = 3
SCORE_MASK_PASSES = 3
OPTIMIZER_PASSES = 7
ACCUMULATION_PASSES = 2


@dataclasses.dataclass(frozen=True)
class Workload:
    """What one chip does in one optimizer step (all micro-batches).

    matmul_flops: the chip's share of the step's matmul FLOPs.
    activation_elements: `[tokens, hidden]` elements per layer x layers, the
    chip's share. score_elements: `[tokens, heads, seq]` elements x layers.
    activation_itemsize: bytes per element of the compute dtype.
    param_bytes: float32 bytes of the parameters this chip updates (all of
    them under data parallelism, its shard under FSDP / tensor parallelism).
    accum_steps: micro-batches per step. model_flops: the whole step's model
    FLOPs (for MFU); tokens: the whole step's tokens.
    """

    num_chips: int
    matmul_flops: float
    activation_elements: float
    score_elements: float
    activation_itemsize: int
    param_bytes: float
    accum_steps: int
    collectives: roofline.CollectiveBytes
    model_flops: float
    tokens: int


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Calibrated prediction for one step; times in seconds."""

    matmul_s: float
    elementwise_s: float
    optimizer_s: float
    collective_s: float
    step_s: float
    tokens_per_s: float
    mfu: float  # model FLOPs / (chips x peak x step time)


def score_bytes_per_element(itemsize: int) -> int:
    """Bytes each attention-score element costs per layer, forward and
    backward: compute-dtype accesses, float32 probabilities, one-byte mask."""
    return SCORE_PASSES * itemsize + SCORE_F32_PASSES * 4 + SCORE_MASK_PASSES * 1


def elementwise_bytes(w: Workload) -> float:
    """Activation and attention-score bytes the step's memory-bound kernels touch."""
    activations = ELEMENTWISE_PASSES * w.activation_elements * w.activation_itemsize
    return activations + w.score_elements * score_bytes_per_element(w.activation_itemsize)


def optimizer_bytes(w: Workload) -> float:
    """Parameter-sized float32 bytes the update and the accumulation touch."""
    accumulation = ACCUMULATION_PASSES * w.accum_steps if w.accum_steps > 1 else 0
    return (OPTIMIZER_PASSES + accumulation) * w.param_bytes


def _fixed_seconds(chip: ChipSpec, w: Workload) -> tuple[float, float, float]:
    """The three terms that do not depend on the matmul efficiency."""
    return (
        elementwise_bytes(w) / chip.hbm_bytes_per_s,
        optimizer_bytes(w) / chip.hbm_bytes_per_s,
        roofline.collective_seconds(chip, w.collectives),
    )


def predict(chip: ChipSpec, w: Workload, efficiency: float | None = None) -> Prediction:
    """Predicted step time, tokens/s and MFU of `w` on `chip` (matmuls at
    `efficiency` of peak; MATMUL_EFFICIENCY unless given)."""
    efficiency = MATMUL_EFFICIENCY if efficiency is None else efficiency
    matmul = w.matmul_flops / (efficiency * chip.peak_bf16_flops)
    elementwise, optimizer, comm = _fixed_seconds(chip, w)
    step = matmul + elementwise + optimizer + comm
    tokens_per_s, mfu = roofline.rates(chip, w.num_chips, step, w.tokens, w.model_flops)
    return Prediction(matmul, elementwise, optimizer, comm, step, tokens_per_s, mfu)


# --- published measurements --------------------------------------------------

# Chips of the published measurements that `topologies.CHIPS` (the compile
# targets) does not have. A100 40GB: NVIDIA A100 datasheet, 1555 GB/s HBM2,
# DGX A100 networking as the 80GB's. TPU v3: Cloud TPU v3 documentation
# (123 TFLOP/s bf16, 32 GiB and 900 GB/s HBM2 per chip; a 1024-chip pod's
# all-reduce bandwidth 340 TB/s, so 332 GB/s a chip, taken as half the
# bidirectional figure as `roofline.collective_seconds` does); one pod, so no
# DCN traffic (the figure is unused).
PUBLISHED_CHIPS: dict[str, ChipSpec] = {
    **CHIPS,
    "a100-40gb": ChipSpec("a100-40gb", "NVIDIA A100-SXM4-40GB", 40 * 10**9, 312e12, 1555 * GB, 600 * GB, 25 * GB),
    "v3": ChipSpec("v3", "TPU v3", 32 * GIB, 123e12, 900 * GB, 2 * 340e12 / 1024, 6.25 * GB),
}
_COMPILE_TARGETS = ("a100", "h100", "h200")


@dataclasses.dataclass(frozen=True)
class Published:
    """One published, measured pre-training throughput and its exact setting.

    micro_batch: sequences per chip per micro-batch; accum_steps: micro-batches
    per optimizer step; hosts x chips_per_host chips, data parallel.
    activation_itemsize: bytes of the activations (2: fp16/bf16 mixed
    precision; 4: float32).
    """

    name: str
    chip: str  # key of PUBLISHED_CHIPS
    hosts: int
    chips_per_host: int
    size: str  # configs/bert_<size>.py
    seq_len: int
    max_predictions: int
    micro_batch: int
    accum_steps: int
    sequences_per_s: float
    source: str  # key of SOURCES
    setting: str
    caveat: str = ""
    activation_itemsize: int = 2

    @property
    def num_chips(self) -> int:
        return self.hosts * self.chips_per_host

    @property
    def topology(self) -> str:
        """`bert-jax compile` topology name ("" where none exists for the chip)."""
        if self.chip not in _COMPILE_TARGETS:
            return ""
        host = f"{self.chip}x{self.chips_per_host}"
        return host if self.hosts == 1 else f"{self.hosts}x{host}"

    @property
    def global_batch(self) -> int:
        return self.num_chips * self.micro_batch * self.accum_steps


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of a published time-to-train: `steps` optimizer steps of
    `global_batch` sequences of `seq_len` tokens, no accumulation."""

    seq_len: int
    max_predictions: int
    global_batch: int
    steps: float


@dataclasses.dataclass(frozen=True)
class PublishedRun:
    """A published time to train (several phases, one measured wall time);
    its throughput is every phase's sequences over the whole time."""

    name: str
    chip: str  # key of PUBLISHED_CHIPS
    num_chips: int
    size: str
    phases: tuple[Phase, ...]
    minutes: float
    source: str  # key of SOURCES
    setting: str
    caveat: str = ""
    activation_itemsize: int = 2
    topology = ""  # no compile-only target: analytic in either mode

    @property
    def sequences(self) -> float:
        return sum(ph.global_batch * ph.steps for ph in self.phases)

    @property
    def sequences_per_s(self) -> float:
        return self.sequences / (60.0 * self.minutes)


# Each published figure's source, by the short name the tables show.
SOURCES = {
    "TF2 21.02": (
        "NVIDIA DeepLearningExamples, TensorFlow2/LanguageModeling/BERT/README.md at 7ee81a16 (2023-01-24), "
        "'Pre-training training performance' tables (TensorFlow 21.02-py3 NGC container, XLA, AMP, LAMB; "
        "scripts/configs/pretrain_config.sh: use_xla=true)"
    ),
    "TF1 20.06": (
        "NVIDIA DeepLearningExamples, TensorFlow/LanguageModeling/BERT/README.md at 49e23b45 (2021-07-21, "
        "unchanged until the 2023 retirement notice), 'Pre-training training performance' tables "
        "(TensorFlow 20.06-py3 NGC container, XLA, AMP, LAMB)"
    ),
    "PyTorch 20.06": (
        "NVIDIA DeepLearningExamples, PyTorch/LanguageModeling/BERT/README.md at 78ec6802 (2021-08-26, the "
        "last revision before LDDL), 'Pre-training NVIDIA DGX ...' tables (pytorch:20.06-py3 NGC container, "
        "mixed precision, LAMB, padded HDF5 data)"
    ),
    "PyTorch 21.11": (
        "NVIDIA DeepLearningExamples, PyTorch/LanguageModeling/BERT/README.md at a07d20a1 (2022-05-25), "
        "'Training performance' tables (pytorch:21.11-py3 NGC container)"
    ),
    "Paddle 22.08": (
        "NVIDIA DeepLearningExamples, PaddlePaddle/LanguageModeling/BERT/README.md at cfdbf4ed (2022-11-20, "
        "initial release, before LDDL binning), 'Pre-training NVIDIA DGX A100 (8x A100 80GB)' table "
        "(PaddlePaddle 22.08-py3 NGC container, AMP, FusedTransformerEncoderLayer, padded data)"
    ),
    "Paddle 22.12": (
        "NVIDIA DeepLearningExamples, PaddlePaddle/LanguageModeling/BERT/README.md at a5388a45 (2023-08-23, "
        "cuDNN fused multi-head attention), 'Pre-training NVIDIA DGX A100 (8x A100 80GB)' tables "
        "(PaddlePaddle 22.12-py3 NGC container)"
    ),
    "LAMB paper": (
        "You et al., 'Large Batch Optimization for Deep Learning: Training BERT in 76 minutes' "
        "(arXiv:1904.00962, v1 title 'Reducing BERT Pre-Training Time from 3 Days to 76 Minutes'), Table 1: "
        "TPU v3 chips, time to train; 9/10 of the epochs at seq 128, 1/10 at seq 512"
    ),
}

_BINNED = (
    "phase 2 data binned by length (LDDL, bins of 64 tokens): most sequences are padded to less "
    "than 512, so the measured step does less work than a padded seq-512 step"
)
_FUSED_MHA = (
    "cuDNN fused multi-head attention: the scores are never written to HBM, so the score traffic "
    "this model counts is not there"
)
_DGX2H = (
    "DGX-2H: V100s at 450 W and higher clocks than the 125 TFLOP/s V100 this model knows (no "
    "published peak for them)"
)
_F32 = "google-research/bert on TPU: float32 activations (matmuls in bf16 passes on the MXU)"
_SCALE = "wall time to train: includes the start, the input pipeline and checkpoints"

CALIBRATION = Published(
    "A100 80GB seq 128, TF2 XLA", "a100", 1, 8, "large", 128, 20, 312, 32, 3799.24, "TF2 21.02",
    "BERT-large phase 1, seq 128, XLA, AMP, 312/GPU x 32 accumulation, DGX A100 8x A100 80GB",
)  # fmt: skip


def _lamb(name: str, chips: int, phase1_batch: int, phase2_batch: int, steps: float, minutes: float, setting: str):
    """A LAMB-paper row: 9/10 of the sequences at seq 128 (20 masked), 1/10 at seq 512 (80)."""
    # phase1_batch x s1 = 9 x phase2_batch x s2 and s1 + s2 = steps.
    s2 = steps / (1 + 9 * phase2_batch / phase1_batch)
    phases = (Phase(128, 20, phase1_batch, steps - s2), Phase(512, 80, phase2_batch, s2))
    return PublishedRun(name, "v3", chips, "large", phases, minutes, "LAMB paper", setting, f"{_F32}; {_SCALE}", 4)


# Like for like: every implementation that writes the attention scores to
# memory and pads each sequence to the full length, as bert-jax does.
VALIDATION: list[Published | PublishedRun] = [
    Published(
        "A100 80GB seq 512, TF2 XLA", "a100", 1, 8, "large", 512, 80, 40, 96, 649.69, "TF2 21.02",
        "BERT-large phase 2, seq 512, XLA, AMP, 40/GPU x 96 accumulation, DGX A100 8x A100 80GB",
    ),
    Published(
        "A100 80GB seq 128, 32 nodes, TF2 XLA", "a100", 32, 8, "large", 128, 20, 312, 1, 110280.73, "TF2 21.02",
        "seq 128, 312/GPU, no accumulation, 32 x DGX A100 (256 GPUs); the table heading says 80GB, "
        "its sentence 40GB: 312/GPU is the 80GB batch",
    ),
    Published(
        "A100 80GB seq 512, 32 nodes, TF2 XLA", "a100", 32, 8, "large", 512, 80, 40, 3, 22506.23, "TF2 21.02",
        "seq 512, 40/GPU x 3 accumulation, 32 x DGX A100 (256 GPUs)",
    ),
    Published(
        "V100 seq 128, DGX-2, TF2 XLA", "v100", 1, 16, "large", 128, 20, 60, 64, 3077.99, "TF2 21.02",
        "seq 128, XLA, AMP, 60/GPU x 64 accumulation, DGX-2 16x V100 32GB",
    ),
    Published(
        "V100 seq 512, DGX-2, TF2 XLA", "v100", 1, 16, "large", 512, 80, 10, 192, 614.94, "TF2 21.02",
        "seq 512, XLA, AMP, 10/GPU x 192 accumulation, DGX-2 16x V100 32GB",
    ),
    Published(
        "V100 seq 128, 8 GPUs, TF2 XLA", "v100", 1, 8, "large", 128, 20, 60, 128, 1561.77, "TF2 21.02",
        "seq 128, XLA, AMP, 60/GPU x 128 accumulation, 8 GPUs of a DGX-2",
    ),
    Published(
        "V100 seq 512, 8 GPUs, TF2 XLA", "v100", 1, 8, "large", 512, 80, 10, 384, 312.03, "TF2 21.02",
        "seq 512, XLA, AMP, 10/GPU x 384 accumulation, 8 GPUs of a DGX-2",
    ),
    Published(
        "A100 40GB seq 128, TF1 XLA", "a100-40gb", 1, 8, "large", 128, 20, 64, 128, 2871.89, "TF1 20.06",
        "seq 128, XLA, AMP, 64/GPU x 128 accumulation, DGX A100 8x A100 40GB",
    ),
    Published(
        "A100 40GB seq 512, TF1 XLA", "a100-40gb", 1, 8, "large", 512, 80, 16, 256, 572.112, "TF1 20.06",
        "seq 512, XLA, AMP, 16/GPU x 256 accumulation, DGX A100 8x A100 40GB",
    ),
    Published(
        "A100 40GB seq 128, 32 nodes, TF1 XLA", "a100-40gb", 32, 8, "large", 128, 20, 64, 4, 77479.87, "TF1 20.06",
        "seq 128, XLA, AMP, 64/GPU x 4 accumulation, 32 x DGX A100 40GB (256 GPUs)",
    ),
    Published(
        "A100 40GB seq 512, 32 nodes, TF1 XLA", "a100-40gb", 32, 8, "large", 512, 80, 16, 16, 16705, "TF1 20.06",
        "seq 512, XLA, AMP, 16/GPU x 16 accumulation, 32 x DGX A100 40GB (256 GPUs)",
    ),
    Published(
        "V100 seq 128, DGX-1, TF1 XLA", "v100", 1, 8, "large", 128, 20, 64, 128, 1443.05, "TF1 20.06",
        "seq 128, XLA, AMP, 64/GPU x 128 accumulation, DGX-1 8x V100 32GB",
    ),
    Published(
        "V100 seq 512, DGX-1, TF1 XLA", "v100", 1, 8, "large", 512, 80, 8, 512, 255.64, "TF1 20.06",
        "seq 512, XLA, AMP, 8/GPU x 512 accumulation, DGX-1 8x V100 32GB",
    ),
    Published(
        "V100 seq 128, DGX-2, TF1 XLA", "v100", 1, 16, "large", 128, 20, 64, 64, 3081.69, "TF1 20.06",
        "seq 128, XLA, AMP, 64/GPU x 64 accumulation, DGX-2 16x V100 32GB",
    ),
    Published(
        "V100 seq 512, DGX-2, TF1 XLA", "v100", 1, 16, "large", 512, 80, 8, 256, 513.43, "TF1 20.06",
        "seq 512, XLA, AMP, 8/GPU x 256 accumulation, DGX-2 16x V100 32GB",
    ),
    Published(
        "A100 40GB seq 128, PyTorch 20.06", "a100-40gb", 1, 8, "large", 128, 20, 64, 128, 3231, "PyTorch 20.06",
        "seq 128, mixed precision, 64/GPU x 128 accumulation, DGX A100 8x A100 40GB",
    ),
    Published(
        "A100 40GB seq 512, PyTorch 20.06", "a100-40gb", 1, 8, "large", 512, 80, 16, 256, 620, "PyTorch 20.06",
        "seq 512, mixed precision, 16/GPU x 256 accumulation, DGX A100 8x A100 40GB",
    ),
    Published(
        "V100 seq 128, DGX-1, PyTorch 20.06", "v100", 1, 8, "large", 128, 20, 16, 512, 1203, "PyTorch 20.06",
        "seq 128, mixed precision, 16/GPU x 512 accumulation, DGX-1 8x V100 32GB",
    ),
    Published(
        "V100 seq 512, DGX-1, PyTorch 20.06", "v100", 1, 8, "large", 512, 80, 4, 1024, 262, "PyTorch 20.06",
        "seq 512, mixed precision, 4/GPU x 1024 accumulation, DGX-1 8x V100 32GB",
    ),
    Published(
        "V100 seq 128, DGX-2, PyTorch 20.06", "v100", 1, 16, "large", 128, 20, 16, 256, 2557, "PyTorch 20.06",
        "seq 128, mixed precision, 16/GPU x 256 accumulation, DGX-2 16x V100 32GB",
    ),
    Published(
        "V100 seq 512, DGX-2, PyTorch 20.06", "v100", 1, 16, "large", 512, 80, 4, 512, 551, "PyTorch 20.06",
        "seq 512, mixed precision, 4/GPU x 512 accumulation, DGX-2 16x V100 32GB",
    ),
    Published(
        "A100 80GB seq 128, PyTorch 21.11", "a100", 1, 8, "large", 128, 20, 256, 32, 4591, "PyTorch 21.11",
        "seq 128, mixed precision, 256/GPU x 32 accumulation, DGX A100 8x A100 80GB",
    ),
    Published(
        "V100 seq 128, DGX-1, PyTorch 21.11", "v100", 1, 8, "large", 128, 20, 64, 64, 1746, "PyTorch 21.11",
        "seq 128, FP16, 64/GPU x 64 accumulation, DGX-1 8x V100 32GB",
    ),
    Published(
        "A100 80GB seq 128, Paddle 22.08", "a100", 1, 8, "large", 128, 20, 256, 32, 4200, "Paddle 22.08",
        "seq 128, AMP, 256/GPU x 32 accumulation, DGX A100 8x A100 80GB",
    ),
    Published(
        "A100 80GB seq 512, Paddle 22.08", "a100", 1, 8, "large", 512, 80, 32, 128, 823, "Paddle 22.08",
        "seq 512, AMP, 32/GPU x 128 accumulation, DGX A100 8x A100 80GB (padded: before LDDL binning)",
    ),
    _lamb("TPU v3 x16, batch 512 (Adam baseline)", 16, 512, 512, 1_000_000, 81.4 * 60,
          "16 TPU v3 chips, 32 sequences/chip, 1M steps, AdamW (the paper's baseline)"),
    _lamb("TPU v3 x16, batch 512 (LAMB)", 16, 512, 512, 1_000_000, 82.8 * 60,
          "16 TPU v3 chips, 32 sequences/chip, 1M steps, LAMB"),
    _lamb("TPU v3 x32, batch 1k", 32, 1024, 1024, 500_000, 43.2 * 60,
          "32 TPU v3 chips, 32 sequences/chip, 500k steps, LAMB"),
    _lamb("TPU v3 x64, batch 2k", 64, 2048, 2048, 250_000, 21.4 * 60,
          "64 TPU v3 chips, 32 sequences/chip, 250k steps, LAMB"),
    _lamb("TPU v3 x128, batch 4k", 128, 4096, 4096, 125_000, 693.6,
          "128 TPU v3 chips, 32 sequences/chip, 125k steps, LAMB"),
    _lamb("TPU v3 x256, batch 8k", 256, 8192, 8192, 62_500, 390.5,
          "256 TPU v3 chips, 32 sequences/chip, 62.5k steps, LAMB"),
    _lamb("TPU v3 x512, batch 16k", 512, 16384, 16384, 31_250, 200.0,
          "512 TPU v3 chips, 32 sequences/chip, 31.25k steps, LAMB"),
    _lamb("TPU v3 x1024, batch 32k", 1024, 32768, 32768, 15_625, 101.2,
          "1024 TPU v3 chips (a pod), 32 sequences/chip, 15.6k steps, LAMB"),
    _lamb("TPU v3 x1024, batch 64k/32k", 1024, 65536, 32768, 8599, 76.19,
          "1024 TPU v3 chips, 64 then 32 sequences/chip, 8599 steps, LAMB (the paper's 76 minutes)"),
]  # fmt: skip

# Not like for like (shown apart in docs/scaling.md, not counted against the
# goal): their step does less work than the one this model counts.
EXCLUDED: list[Published] = [
    Published(
        "A100 80GB seq 128, Paddle 22.12 fused MHA", "a100", 1, 8, "large", 128, 20, 256, 32, 5541, "Paddle 22.12",
        "seq 128, AMP, 256/GPU x 32 accumulation, 8x A100 80GB", _FUSED_MHA,
    ),
    Published(
        "A100 80GB seq 128, 8 nodes, Paddle 22.12 fused MHA", "a100", 8, 8, "large", 128, 20, 256, 4, 41681,
        "Paddle 22.12", "seq 128, AMP, 256/GPU x 4 accumulation, 8 x DGX A100 (64 GPUs)", _FUSED_MHA,
    ),
    Published(
        "A100 80GB seq 512, Paddle 22.12 fused MHA", "a100", 1, 8, "large", 512, 80, 32, 128, 2109, "Paddle 22.12",
        "seq 512, AMP, 32/GPU x 128 accumulation, 8x A100 80GB", f"{_FUSED_MHA}; {_BINNED}",
    ),
    Published(
        "A100 80GB seq 512, PyTorch 21.11", "a100", 1, 8, "large", 512, 80, 32, 128, 1657, "PyTorch 21.11",
        "seq 512, mixed precision, 32/GPU x 128 accumulation, DGX A100 80GB", _BINNED,
    ),
    Published(
        "V100 seq 512, DGX-1, PyTorch 21.11", "v100", 1, 8, "large", 512, 80, 8, 256, 586, "PyTorch 21.11",
        "seq 512, FP16, 8/GPU x 256 accumulation, DGX-1 8x V100 32GB", _BINNED,
    ),
    Published(
        "V100 seq 128, 32 x DGX-2H, TF2 XLA", "v100", 32, 16, "large", 128, 20, 60, 2, 84223.16, "TF2 21.02",
        "seq 128, XLA, AMP, 60/GPU x 2 accumulation, 32 x DGX-2H (512 GPUs)", _DGX2H,
    ),
    Published(
        "V100 seq 512, 32 x DGX-2H, TF2 XLA", "v100", 32, 16, "large", 512, 80, 10, 6, 18786.93, "TF2 21.02",
        "seq 512, XLA, AMP, 10/GPU x 6 accumulation, 32 x DGX-2H (512 GPUs)", _DGX2H,
    ),
]  # fmt: skip


def bert_param_count(model_cfg) -> int:
    """Parameters of a BERT pre-training model (embeddings, layers, pooler,
    NSP and MLM heads; the decoder tied to the word embeddings)."""
    h, i, v, n = (
        model_cfg.hidden_size,
        model_cfg.intermediate_size,
        model_cfg.vocab_size,
        model_cfg.num_layers,
    )
    embeddings = (v + model_cfg.max_position_embeddings + model_cfg.type_vocab_size) * h + 2 * h
    layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h
    heads = (h * h + h) + (2 * h + 2) + (h * h + h + 2 * h + v)  # pooler, NSP, MLM transform + bias
    return embeddings + n * layer + heads


def analytic_workload(
    model_cfg,
    num_chips: int,
    slices: int,
    global_batch: int,
    seq_len: int,
    max_predictions: int,
    accum_steps: int,
    activation_itemsize: int = 2,
    parallelism: roofline.Parallelism | None = None,
) -> Workload:
    """The Workload of `num_chips` (in `slices` hosts / slices) from the
    model's shapes alone, without compiling: the analytic matmul count
    (`bert_jax.flops`, every layer at every position as with scanned layers)
    and the analytic parameter count. `parallelism` (data x fsdp x tensor =
    num_chips) defaults to pure data parallelism; under FSDP or tensor
    parallelism each chip updates its shard of the parameters and sends the
    collectives `roofline.collective_bytes` counts, as `bert-jax compile` does."""
    from bert_jax import flops

    par = roofline.Parallelism(num_chips, 1, 1, slices) if parallelism is None else parallelism
    model_flops = flops.train_step_flops(model_cfg, global_batch, seq_len, max_predictions)
    params = bert_param_count(model_cfg)
    tokens = global_batch * seq_len
    layers = model_cfg.num_layers
    local_batch = global_batch / (par.data * par.fsdp) / accum_steps
    act = local_batch * seq_len * model_cfg.hidden_size * activation_itemsize
    comm = roofline.collective_bytes(par, 4.0 * params, act, layers)
    return Workload(
        num_chips=num_chips,
        matmul_flops=model_flops / num_chips,
        activation_elements=tokens / num_chips * layers * model_cfg.hidden_size,
        score_elements=tokens / num_chips * layers * model_cfg.num_heads * seq_len,
        activation_itemsize=activation_itemsize,
        param_bytes=4.0 * params / (par.fsdp * par.tensor),
        accum_steps=accum_steps,
        collectives=comm,
        model_flops=model_flops,
        tokens=tokens,
    )  # fmt: skip


def published_workload(p: Published) -> Workload:
    """`analytic_workload` of a published setting."""
    from bert_jax.config import model_config, pretrain_config

    cfg = model_config(pretrain_config(p.size))
    return analytic_workload(
        cfg, p.num_chips, p.hosts, p.global_batch, p.seq_len, p.max_predictions, p.accum_steps,
        p.activation_itemsize,
    )  # fmt: skip


def calibrate_matmul_efficiency(p: Published = CALIBRATION, w: Workload | None = None) -> float:
    """The MATMUL_EFFICIENCY for which `predict` gives `p`'s measured
    throughput exactly: solve step = N x batch / published for the matmul term."""
    chip = PUBLISHED_CHIPS[p.chip]
    w = published_workload(p) if w is None else w
    target_step = w.tokens / (p.sequences_per_s * p.seq_len)
    rest = sum(_fixed_seconds(chip, w))
    if target_step <= rest:
        raise ValueError(f"{p.name}: the memory-bound terms alone ({rest:.3f} s) exceed the measured step")
    return w.matmul_flops / (chip.peak_bf16_flops * (target_step - rest))


def run_seconds(run: PublishedRun, efficiency: float | None = None) -> float:
    """Predicted wall time of `run`: each phase's steps x its predicted step."""
    from bert_jax.config import model_config, pretrain_config

    cfg = model_config(pretrain_config(run.size))
    chip = PUBLISHED_CHIPS[run.chip]
    total = 0.0
    for ph in run.phases:
        w = analytic_workload(
            cfg, run.num_chips, 1, ph.global_batch, ph.seq_len, ph.max_predictions, 1, run.activation_itemsize
        )
        total += ph.steps * predict(chip, w, efficiency).step_s
    return total


def predicted_sequences_per_s(
    p: Published | PublishedRun, w: Workload | None = None, efficiency: float | None = None
) -> float:
    """Calibrated prediction of `p`'s throughput, sequences/s (for a run:
    its sequences over its predicted wall time)."""
    if isinstance(p, PublishedRun):
        return p.sequences / run_seconds(p, efficiency)
    w = published_workload(p) if w is None else w
    return predict(PUBLISHED_CHIPS[p.chip], w, efficiency).tokens_per_s / p.seq_len


def error(p: Published | PublishedRun, efficiency: float | None = None) -> float:
    """Predicted over published throughput, minus 1 (+0.10: predicted 10% faster)."""
    return predicted_sequences_per_s(p, efficiency=efficiency) / p.sequences_per_s - 1
