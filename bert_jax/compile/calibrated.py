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
  value for which this model gives NVIDIA's measured 5541 sequences/s for
  BERT-large phase 1 (seq 128, 20 masked positions) on 8 x A100 80GB
  (DeepLearningExamples PaddlePaddle BERT README, `CALIBRATION`);
  `calibrate_matmul_efficiency(CALIBRATION)` recomputes it.
* ELEMENTWISE_PASSES: reads + writes of a `[tokens, hidden]` activation per
  layer, forward and backward together, in the compute dtype. Counted, not
  fitted: forward 16 = two fused bias + dropout + residual + LayerNorm blocks
  (read the matmul output and the residual, write the result: 3 each),
  GELU over the 4H intermediate (read and write 4H: 8), the Q/K/V bias and
  head reshape (2); backward about twice the forward (the saved input and the
  incoming gradient are read, the gradient written): 3 x 16 = 48.
* SCORE_PASSES: reads + writes of the `[tokens, heads, seq]` attention
  scores per layer, forward and backward: forward mask + scale + softmax (2)
  and dropout (2), backward twice that: 12. bert-jax materialises the scores
  whenever attention dropout is on (`model.attention_impl='auto'`).
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
from bert_jax.compile.topologies import CHIPS, ChipSpec

MATMUL_EFFICIENCY = 0.6166  # fitted: calibrate_matmul_efficiency(CALIBRATION)
ELEMENTWISE_PASSES = 48
SCORE_PASSES = 12
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

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def elementwise_bytes(w: Workload) -> float:
    """Activation and attention-score bytes the step's memory-bound kernels touch."""
    passes = ELEMENTWISE_PASSES * w.activation_elements + SCORE_PASSES * w.score_elements
    return passes * w.activation_itemsize


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
    if step <= 0:
        return Prediction(matmul, elementwise, optimizer, comm, step, 0.0, 0.0)
    mfu = w.model_flops / (w.num_chips * chip.peak_bf16_flops * step)
    return Prediction(matmul, elementwise, optimizer, comm, step, w.tokens / step, mfu)


# --- published measurements --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Published:
    """One published, measured pre-training throughput and its exact setting.

    micro_batch: sequences per chip per micro-batch; accum_steps: micro-batches
    per optimizer step; hosts x chips_per_host chips, data parallel.
    """

    name: str
    chip: str  # key of topologies.CHIPS
    hosts: int
    chips_per_host: int
    size: str  # configs/bert_<size>.py
    seq_len: int
    max_predictions: int
    micro_batch: int
    accum_steps: int
    sequences_per_s: float
    source: str
    setting: str
    caveat: str = ""

    @property
    def num_chips(self) -> int:
        return self.hosts * self.chips_per_host

    @property
    def topology(self) -> str:
        """`bert-jax compile` topology name ("" where none exists for the chip)."""
        if self.chip not in ("a100", "h100", "h200"):
            return ""
        host = f"{self.chip}x{self.chips_per_host}"
        return host if self.hosts == 1 else f"{self.hosts}x{host}"

    @property
    def global_batch(self) -> int:
        return self.num_chips * self.micro_batch * self.accum_steps


_PADDLE = (
    "NVIDIA DeepLearningExamples, PaddlePaddle/LanguageModeling/BERT/README.md, "
    "'Pre-training NVIDIA DGX A100 (8x A100 80GB)' tables (PaddlePaddle 22.12-py3 NGC container; "
    "README revision with the July 2023 cuDNN fused attention change)"
)
_PYTORCH = (
    "NVIDIA DeepLearningExamples, PyTorch/LanguageModeling/BERT/README.md, "
    "'Training performance' tables (pytorch:21.11-py3 NGC container)"
)
_BINNED = (
    "phase 2 data binned by length (LDDL, bins of 64 tokens): most sequences are padded to less "
    "than 512, so the measured step does less work than a padded seq-512 step"
)

CALIBRATION = Published(
    "A100 seq 128 (Paddle)", "a100", 1, 8, "large", 128, 20, 256, 32, 5541, _PADDLE,
    "BERT-large phase 1, seq 128, AMP (fp16), LAMB, 256/GPU x 32 accumulation = 8192/GPU, 8x A100 80GB",
)  # fmt: skip

VALIDATION = [
    Published(
        "A100 seq 128, 8 nodes (Paddle)", "a100", 8, 8, "large", 128, 20, 256, 4, 41681, _PADDLE,
        "BERT-large phase 1, seq 128, AMP, 256/GPU x 4 accumulation, 8 x DGX A100 (64 GPUs, InfiniBand)",
    ),
    Published(
        "A100 seq 128 (PyTorch)", "a100", 1, 8, "large", 128, 20, 256, 32, 4591, _PYTORCH,
        "BERT-large phase 1, seq 128, mixed precision, LAMB, 256/GPU x 32 accumulation, DGX A100 80GB",
    ),
    Published(
        "V100 seq 128 (PyTorch)", "v100", 1, 8, "large", 128, 20, 64, 64, 1746, _PYTORCH,
        "BERT-large phase 1, seq 128, FP16, LAMB, 64/GPU x 64 accumulation, DGX-1 8x V100 32GB",
    ),
    Published(
        "A100 seq 512 (Paddle)", "a100", 1, 8, "large", 512, 80, 32, 128, 2109, _PADDLE,
        "BERT-large phase 2, seq 512, AMP, 32/GPU x 128 accumulation, 8x A100 80GB", _BINNED,
    ),
    Published(
        "A100 seq 512 (PyTorch)", "a100", 1, 8, "large", 512, 80, 32, 128, 1657, _PYTORCH,
        "BERT-large phase 2, seq 512, mixed precision, 32/GPU x 128 accumulation, DGX A100 80GB", _BINNED,
    ),
    Published(
        "V100 seq 512 (PyTorch)", "v100", 1, 8, "large", 512, 80, 8, 256, 586, _PYTORCH,
        "BERT-large phase 2, seq 512, FP16, 8/GPU x 256 accumulation, DGX-1 8x V100 32GB", _BINNED,
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
) -> Workload:
    """The Workload of pure data parallelism over `num_chips` (in `slices`
    hosts / slices) from the model's shapes alone, without compiling: the
    analytic matmul count (`bert_jax.flops`, every layer at every position as
    with scanned layers) and the analytic parameter count."""
    from bert_jax import flops

    model_flops = flops.train_step_flops(model_cfg, global_batch, seq_len, max_predictions)
    params = bert_param_count(model_cfg)
    tokens = global_batch * seq_len
    layers = model_cfg.num_layers
    local_batch = global_batch / num_chips / accum_steps
    act = local_batch * seq_len * model_cfg.hidden_size * activation_itemsize
    comm = roofline.collective_bytes(roofline.Parallelism(num_chips, 1, 1, slices), 4.0 * params, act, layers)
    return Workload(
        num_chips=num_chips,
        matmul_flops=model_flops / num_chips,
        activation_elements=tokens / num_chips * layers * model_cfg.hidden_size,
        score_elements=tokens / num_chips * layers * model_cfg.num_heads * seq_len,
        activation_itemsize=activation_itemsize,
        param_bytes=4.0 * params,
        accum_steps=accum_steps,
        collectives=comm,
        model_flops=model_flops,
        tokens=tokens,
    )  # fmt: skip


def published_workload(p: Published) -> Workload:
    """`analytic_workload` of a published setting (bf16/fp16 activations)."""
    from bert_jax.config import model_config, pretrain_config

    cfg = model_config(pretrain_config(p.size))
    return analytic_workload(
        cfg, p.num_chips, p.hosts, p.global_batch, p.seq_len, p.max_predictions, p.accum_steps
    )


def calibrate_matmul_efficiency(p: Published = CALIBRATION, w: Workload | None = None) -> float:
    """The MATMUL_EFFICIENCY for which `predict` gives `p`'s measured
    throughput exactly: solve step = N x batch / published for the matmul term."""
    chip = CHIPS[p.chip]
    w = published_workload(p) if w is None else w
    target_step = w.tokens / (p.sequences_per_s * p.seq_len)
    rest = sum(_fixed_seconds(chip, w))
    if target_step <= rest:
        raise ValueError(f"{p.name}: the memory-bound terms alone ({rest:.3f} s) exceed the measured step")
    return w.matmul_flops / (chip.peak_bf16_flops * (target_step - rest))


def predicted_sequences_per_s(
    p: Published, w: Workload | None = None, efficiency: float | None = None
) -> float:
    """Calibrated prediction of `p`'s throughput, sequences/s."""
    w = published_workload(p) if w is None else w
    return predict(CHIPS[p.chip], w, efficiency).tokens_per_s / p.seq_len
