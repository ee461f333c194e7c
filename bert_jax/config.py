"""The shape of every bert-jax configuration, as data (ml_collections).

`configs/*.py` files start from `pretrain_config()` and set sizes; command-line
overrides (`--config.total_steps=40`) do the rest. `model_config(config)` turns
the `model` section into the hashable `ModelSpec` the Flax modules take: the
architecture (`ModelConfig`, what a checkpoint saves) and how this run
executes it (`Execution`: dtypes, remat, scan, attention kernel), both set
under `model.` (`--config.model.scan_layers=True`).
No JAX, TensorFlow or file I/O here.
"""

from __future__ import annotations

import dataclasses
import math

import ml_collections

from bert_jax.errors import ConfigError
from bert_jax.model import EXECUTION_FIELDS, FAMILIES, Execution, ModelConfig, ModelSpec, modernbert_fields

# (num_layers, hidden_size, num_heads) of the standard sizes (Turc et al. 2019
# for the small ones); intermediate is 4 * hidden.
SIZES = {
    "tiny": (2, 128, 2),
    "mini": (4, 256, 4),
    "small": (4, 512, 8),
    "medium": (8, 512, 8),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}


# ModernBERT's published sizes (Warner et al. 2024; answerdotai/ModernBERT-*
# config.json): num_layers, hidden_size, num_heads, intermediate_size (the
# GeGLU width), sliding window; tiny is ours, for tests.
MODERNBERT_SIZES = {
    "tiny": (4, 128, 2, 192, 16),
    "base": (22, 768, 12, 1152, 128),
    "large": (28, 1024, 16, 2624, 128),
}


# logical axis name -> the mesh axes it is split over: one of data, fsdp,
# tensor, several joined by "," (split over their product), or "none"
# (replicated). A mesh axis of size 1 splits nothing, so this one table gives
# DP (data=N), FSDP (fsdp=N), TP (tensor=N) and any mix.
DEFAULT_MESH_RULES = {
    # parameters
    "vocab": "tensor",
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv": "none",
    "position": "none",
    "type": "none",
    "layers": "none",
    "classes": "none",
    # activations: batch over every data-parallel axis, heads / MLP over tensor,
    # the MLM logits over tensor by vocabulary (unevenly where it does not divide)
    "batch": "data,fsdp",
    "length": "none",
    "act_embed": "none",
    "act_heads": "tensor",
    "act_kv": "none",
    "act_mlp": "tensor",
    "act_vocab": "tensor",
}


def model_section(size: str = "base", **overrides) -> ml_collections.ConfigDict:
    """The `model` section for a named size: every ModelConfig (architecture)
    and Execution field present."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; known sizes: {', '.join(SIZES)}")
    layers, hidden, heads = SIZES[size]
    fields = {**ModelConfig().to_dict(), **dataclasses.asdict(Execution())}
    fields.update(num_layers=layers, hidden_size=hidden, num_heads=heads, intermediate_size=4 * hidden)
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


def pretrain_config(size: str = "base") -> ml_collections.ConfigDict:
    """Every field a pre-training run reads, with BERT's published defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.total_steps = 1_000_000
    c.log_every_steps = 100
    c.checkpoint_every_steps = 10_000
    c.eval_every_steps = 10_000
    c.eval_steps = 100
    c.keep_checkpoints = 3
    c.keep_best_eval = False
    # Time to accuracy: stop (saving a checkpoint) at the first periodic held-out
    # evaluation whose MLM accuracy reaches this, and write WORKDIR/time_to_target.json
    # (bert_jax/train/target.py); 0 = off. Needs eval_every_steps, eval_steps and eval data.
    c.target_mlm_accuracy = 0.0
    c.on_nan = "stop"  # or "skip": drop the update of a step with a non-finite loss
    c.batch_size = 256  # global examples per optimizer step

    c.model = model_section(size)

    c.data = ml_collections.ConfigDict()
    # Created shards (TFRecord glob, comma-separated globs allowed) and a held-out set.
    c.data.train_files = ""
    c.data.eval_files = ""
    # Or: a corpus to build vocab + shards from in the workdir before training
    # ("builtin:stdlib-docs", a glob of text files, or "tfds:NAME:FEATURE").
    c.data.corpus = ""
    c.data.eval_corpus = ""
    c.data.vocab_file = ""
    c.data.vocab_size = 0  # when building a vocab from the corpus
    c.data.do_lower_case = True
    c.data.mode = "nsp"  # nsp | sop | mlm_packed | packed
    c.data.masking = "static"  # static (masks in the shards) | dynamic (masked in tf.data)
    c.data.max_seq_length = 128
    c.data.max_predictions_per_seq = 20
    c.data.masked_lm_prob = 0.15
    c.data.do_whole_word_mask = False
    # ALBERT: mask n-grams of up to this many words (1 = single tokens, BERT);
    # create-data's --ngram_max (static masks only).
    c.data.ngram_max = 1
    c.data.dupe_factor = 10
    c.data.short_seq_prob = 0.1
    c.data.shuffle_buffer = 10_000
    c.data.prefetch = 2
    # Streams the training data is read as (0: automatic, the largest divisor of batch_size up to 64).
    # The batch sequence depends on it, never on the process count: it must divide batch_size,
    # be a multiple of the process count and not exceed the shard files (docs/data.md).
    c.data.streams = 0
    # Random batches instead of files (tests, smoke runs): no vocab or shards needed.
    c.data.synthetic = False

    # BERT's recipe: 90% of steps at seq 128, then 512. Empty = one phase with
    # the data section's lengths. Each phase: fraction (of total_steps),
    # max_seq_length, max_predictions_per_seq, and optional train_files/eval_files,
    # masked_lm_prob (the phase's dynamic masking rate of the training data, in
    # (0, 1); default data.masked_lm_prob) and model (overrides of the model
    # fields that change no parameter shape: global_rope_theta, local_rope_theta;
    # ModernBERT's context extension). bert_jax/train/phases.py reads them.
    c.phases = []

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adamw"  # adamw | lamb
    c.optimizer.learning_rate = 1e-4
    c.optimizer.warmup_steps = 10_000
    c.optimizer.schedule = "linear"  # linear | polynomial | cosine | constant | wsd (after warmup)
    c.optimizer.end_learning_rate = 0.0
    # wsd (warmup-stable-decay): constant after warmup, then a decay over the
    # last decay_steps (0: decay_fraction of total_steps), linear or 1-sqrt.
    c.optimizer.decay_steps = 0
    c.optimizer.decay_fraction = 0.1
    c.optimizer.decay_shape = "linear"  # linear | 1-sqrt
    c.optimizer.power = 1.0  # polynomial decay power
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-6
    c.optimizer.weight_decay = 0.01
    c.optimizer.max_grad_norm = 1.0
    c.optimizer.grad_accum_steps = 1

    # Device mesh: sizes of the named axes; -1 takes the remaining devices.
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    # The logical-axis rule table (bert_jax.train.sharding): which mesh axes
    # each named parameter / activation dimension is split over. One rule can
    # be changed from the command line, e.g. --config.mesh.rules.embed=none.
    c.mesh.rules = ml_collections.ConfigDict(DEFAULT_MESH_RULES)

    # Probe: fine-tune a copy on a small downstream set every N steps (0 = off).
    c.probe = ml_collections.ConfigDict()
    c.probe.every_steps = 0
    c.probe.task = "sst2"
    c.probe.data_dir = ""
    c.probe.train_examples = 2000
    c.probe.steps = 200
    c.probe.data_source = "tsv"  # tsv (GLUE folder layout) | tfds (glue/* prepared under data_dir)
    c.probe.vocab_file = ""  # default: the pre-training vocab (data.vocab_file or the workdir's)
    c.probe.learning_rate = 5e-5
    c.probe.batch_size = 32
    c.probe.eval_batch_size = 64
    c.probe.max_seq_length = 128

    # Peak FLOP/s of one device (TFLOP/s, e.g. 989 for an H100 in bf16); 0 = unknown,
    # then the log shows model FLOP/s but no MFU.
    c.peak_tflops_per_device = 0.0

    c.init_checkpoint = ""  # start from another run's checkpoint or an HF folder

    # General distillation (bert_jax.train.mlm_distill): a teacher with an MLM
    # head (pretrain workdir/step, bert-jax model dir or HF *ForMaskedLM folder)
    # sharing the student's vocab; "" = off. MLM loss = alpha * T^2 *
    # KL(teacher_T || student_T) + (1 - alpha) * CE at the masked positions.
    c.distill = ml_collections.ConfigDict()
    c.distill.teacher = ""
    c.distill.temperature = 2.0
    c.distill.alpha = 0.5
    return c


def model_config(config: ml_collections.ConfigDict) -> ModelSpec:
    """The `model` section as the run's ModelSpec (architecture + execution),
    with a clear error for bad keys."""
    return ModelSpec.from_dict(config.model.to_dict())


def execution_config(config: ml_collections.ConfigDict) -> Execution:
    """How this run executes a model (the `model` section's dtype, remat,
    scan, attention keys), for a model whose architecture comes from a
    checkpoint (`bert-jax evaluate --checkpoint`)."""
    return Execution(**{name: config.model[name] for name in EXECUTION_FIELDS if name in config.model})


# data.mode each pre-training pair head trains on (the first: the family default;
# "packed": documents packed whole with document_ids, create-data --packed).
_MODES_OF_PAIR_HEAD = {"nsp": ("nsp",), "sop": ("sop",), "none": ("mlm_packed", "packed")}


def family_config(family: str, size: str = "base") -> ml_collections.ConfigDict:
    """`pretrain_config(size)` with a family's architecture and its published
    recipe (docs/family.md): RoBERTa / XLM-R / CamemBERT (Liu et al. 2019,
    Conneau et al. 2020): packed MLM without NSP, dynamic masking, AdamW with
    b2=0.98, batch 8K; ALBERT (Lan et al. 2020): factorised embeddings,
    one shared layer, SOP, 3-gram masking, LAMB, batch 4K."""
    c = pretrain_config(size)
    hidden = SIZES[size][1]
    if family in ("roberta", "xlmr", "camembert"):
        vocab = {"roberta": 50265, "xlmr": 250002, "camembert": 32005}[family]
        c.model = model_section(
            size,
            family=family,
            vocab_size=vocab,
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=1,
            position_offset=2,
            layer_norm_eps=1e-5,
            pair_head="none",
        )
        c.data.mode = "mlm_packed"
        c.data.masking = "dynamic"
        c.data.do_lower_case = False
        c.data.max_seq_length = 512
        c.data.max_predictions_per_seq = 80
        c.batch_size = 8192
        c.total_steps = 500_000
        c.optimizer.name = "adamw"
        c.optimizer.learning_rate = 6e-4 if size != "large" else 4e-4
        c.optimizer.warmup_steps = 24_000
        c.optimizer.b2 = 0.98
        c.optimizer.eps = 1e-6
        c.optimizer.weight_decay = 0.01
    elif family == "albert":
        c.model = model_section(
            size,
            family="albert",
            vocab_size=30000,
            embedding_size=min(128, hidden),
            share_layers=True,
            hidden_act="gelu_new",
            hidden_dropout=0.0,
            attention_dropout=0.0,
            pair_head="sop",
        )
        c.data.mode = "sop"
        c.data.ngram_max = 3
        c.data.max_seq_length = 512
        c.data.max_predictions_per_seq = 20
        c.batch_size = 4096
        c.total_steps = 125_000
        c.optimizer.name = "lamb"
        c.optimizer.learning_rate = 0.00176
        c.optimizer.warmup_steps = 3125
    elif family == "modernbert":
        _modernbert(c, size)
    elif family != "bert":
        raise ConfigError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return c


# ModernBERT's published recipe (Warner et al. 2024, arXiv:2412.13663, section
# 2.2 and appendix; AnswerDotAI/ModernBERT yamls/modernbert/
# modernbert-base-pretrain.yaml): MLM only at 30% masking on packed sequences
# of 1,024 tokens with RoPE base 10,000 in every layer, AdamW b2=0.98, weight
# decay 1e-5, a warmup-stable-decay ("trapezoidal") schedule with a 3B-token
# (base) / 2B-token (large) warmup at peak 8e-4 / 5e-4, global batch 4,608,
# 1.719T tokens; then context extension: global layers' RoPE base 160,000
# (the published config.json's global_rope_theta; local layers keep 10,000)
# at 8,192 tokens for 300B tokens, the last 50B a 1-sqrt decay.
# In steps of 4,608 sequences: 1.719T / (4,608 x 1,024) = 364K steps at 1,024,
# 300B / (4,608 x 8,192) = 7.9K at 8,192 (fraction 0.98 of 372K), the 50B
# decay 1.3K steps (decay_fraction 0.0035 of 372K: a shortened run keeps a
# proportionate decay), the warmup 636 (base) / 424 (large) steps.
# Not reproduced: the batch-size warmup and the context extension's lower
# constant rate (3e-4): one schedule spans both phases here.
MODERNBERT_MASKED_LM_PROB = 0.30
MODERNBERT_PRETRAIN_ROPE_THETA = 10_000.0
MODERNBERT_CONTEXT_ROPE_THETA = 160_000.0
# size: (total_steps, batch_size, warmup_steps, decay_fraction, short seq, long seq, fraction at the short seq)
MODERNBERT_RECIPES = {
    "tiny": (1_000, 32, 20, 0.1, 128, 512, 0.9),  # ours, for tests and CPU runs
    "base": (372_000, 4608, 636, 0.0035, 1024, 8192, 0.98),
    "large": (372_000, 4608, 424, 0.0035, 1024, 8192, 0.98),
}


def max_predictions_for(seq_len: int, masked_lm_prob: float) -> int:
    """Masked positions per sequence that leave room for `masked_lm_prob` of
    a full row (dynamic masking caps its budget there)."""
    return min(seq_len - 2, max(1, math.ceil(masked_lm_prob * seq_len)))


def modernbert_phases(size: str, masked_lm_prob: float = MODERNBERT_MASKED_LM_PROB) -> list[dict]:
    """ModernBERT's two phases: the short sequence at RoPE base 10,000, then
    context extension to the long one with the global layers' base at 160,000."""
    _, _, _, _, short, long, fraction = MODERNBERT_RECIPES[size]
    return [
        dict(
            fraction=fraction,
            max_seq_length=short,
            max_predictions_per_seq=max_predictions_for(short, masked_lm_prob),
            masked_lm_prob=masked_lm_prob,
            model=dict(global_rope_theta=MODERNBERT_PRETRAIN_ROPE_THETA),
        ),
        dict(
            fraction=1.0 - fraction,
            max_seq_length=long,
            max_predictions_per_seq=max_predictions_for(long, masked_lm_prob),
            masked_lm_prob=masked_lm_prob,
            model=dict(global_rope_theta=MODERNBERT_CONTEXT_ROPE_THETA),
        ),
    ]


def _modernbert(c: ml_collections.ConfigDict, size: str) -> None:
    """ModernBERT (Warner et al. 2024): the architecture of `modernbert_fields`
    at its published sizes, MLM only on packed rows (document_ids) with dynamic
    masking at 30%, AdamW at its published peak rates (8e-4 base, 5e-4 large)
    with weight decay 1e-5 on a warmup-stable-decay schedule, in two phases
    (MODERNBERT_RECIPES): 1,024 tokens, then context extension to 8,192 with
    the global layers' RoPE base raised to 160,000. The model section holds
    the final model (global_rope_theta 160,000, as the published config.json),
    so an exported last checkpoint is ModernBERT as published."""
    if size not in MODERNBERT_SIZES:
        raise ConfigError(f"unknown ModernBERT size {size!r}; known: {', '.join(MODERNBERT_SIZES)}")
    layers, hidden, heads, inter, window = MODERNBERT_SIZES[size]
    c.model = model_section(
        size,
        **modernbert_fields(
            num_layers=layers,
            hidden_size=hidden,
            num_heads=heads,
            intermediate_size=inter,
            local_attention=window,
            vocab_size=50368,
            max_position_embeddings=8192 if size != "tiny" else 512,
            pad_token_id=50283,
        ),
    )
    total, batch, warmup, decay, short, _, _ = MODERNBERT_RECIPES[size]
    c.data.mode = "packed"
    c.data.masking = "dynamic"
    c.data.masked_lm_prob = MODERNBERT_MASKED_LM_PROB
    c.data.do_lower_case = False
    c.data.max_seq_length = short
    c.data.max_predictions_per_seq = max_predictions_for(short, MODERNBERT_MASKED_LM_PROB)
    c.phases = modernbert_phases(size)
    c.total_steps = total
    c.batch_size = batch
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 5e-4 if size == "large" else 8e-4
    c.optimizer.b2 = 0.98
    c.optimizer.eps = 1e-6
    c.optimizer.weight_decay = 1e-5
    c.optimizer.schedule = "wsd"
    c.optimizer.warmup_steps = warmup
    c.optimizer.decay_steps = 0
    c.optimizer.decay_fraction = decay
    c.optimizer.decay_shape = "1-sqrt"
    c.optimizer.end_learning_rate = 0.0


def validate_family(config: ml_collections.ConfigDict) -> ModelSpec:
    """The model section as a ModelConfig (which refuses mixed family
    settings: ALBERT sharing with RoBERTa positions, E > H, ...), checked
    against the data section: the pair head must match data.mode."""
    cfg = model_config(config)
    modes = _MODES_OF_PAIR_HEAD[cfg.pair_head]
    if config.data.mode not in modes:
        want = " or ".join(repr(m) for m in modes)
        raise ConfigError(
            f"model.pair_head={cfg.pair_head!r} trains on data.mode={want} but data.mode="
            f"{config.data.mode!r}; set one to match the other"
        )
    if cfg.family in ("roberta", "xlmr", "camembert") and cfg.type_vocab_size != 1:
        raise ConfigError(
            f"model.family={cfg.family!r} has one token type; model.type_vocab_size="
            f"{cfg.type_vocab_size} should be 1"
        )
    return cfg


# BERT's max_predictions_per_seq for its two sequence lengths; other lengths
# get round(0.15 * seq_len).
BERT_MAX_PREDICTIONS = {128: 20, 512: 80}


@dataclasses.dataclass(frozen=True)
class StepShape:
    """Sizes of one train step: global batch, sequence length, masked positions per sequence."""

    batch_size: int
    seq_len: int
    max_predictions: int


def default_max_predictions(seq_len: int, masked_lm_prob: float = 0.15) -> int:
    """Masked positions per sequence: BERT's at its 15% (20 at 128, 80 at 512,
    else 15%), room for `masked_lm_prob` of the tokens at any other rate
    (ModernBERT's 30%: 308 at 1,024)."""
    if masked_lm_prob != 0.15:
        return max_predictions_for(seq_len, masked_lm_prob)
    return BERT_MAX_PREDICTIONS.get(seq_len, max(1, round(0.15 * seq_len)))


def resolve_config(
    config: ml_collections.ConfigDict,
    batch_size: int,
    seq_len: int,
    max_predictions: int = 0,
    dtype: str = "",
) -> tuple[ml_collections.ConfigDict, StepShape]:
    """A copy of `config` with one step's sizes applied (phases ignored), as
    `bench` and `compile` take them from their flags."""
    if batch_size < 1 or seq_len < 2:
        raise ConfigError(f"--batch_size={batch_size} and --seq_len={seq_len} must be >= 1 and >= 2")
    config = ml_collections.ConfigDict(config.to_dict())
    if seq_len > config.model.max_position_embeddings:
        raise ConfigError(
            f"--seq_len={seq_len} exceeds model.max_position_embeddings="
            f"{config.model.max_position_embeddings}; use a shorter --seq_len"
        )
    p = max_predictions or default_max_predictions(seq_len, config.data.get("masked_lm_prob", 0.15))
    if not 1 <= p < seq_len:
        raise ConfigError(f"--max_predictions={p} must be in [1, seq_len={seq_len})")
    config.batch_size = batch_size
    config.data.max_seq_length = seq_len
    config.data.max_predictions_per_seq = p
    config.phases = []
    if dtype:
        config.model.dtype = dtype
    return config, StepShape(batch_size, seq_len, p)
