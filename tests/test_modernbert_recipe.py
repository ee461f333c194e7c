"""ModernBERT's training recipe (issue 19) as configuration of the one
pre-training loop: 30% dynamic masking, a warmup-stable-decay learning rate,
a masking rate per phase (mmBERT's 30% -> 15% -> 5%), and a context-extension
phase that lengthens the sequence and raises the global layers' RoPE base.
A tiny ModernBERT pre-trains on tiny packed shards through both phases, and a
run stopped inside phase 2 resumes with the losses of one that never stopped.
"""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from bert_jax.config import family_config, model_config  # noqa: E402
from bert_jax.data import create_data  # noqa: E402
from bert_jax.errors import ConfigError  # noqa: E402
from bert_jax.train import inputs, metrics_log, optim, phases, preflight, pretraining  # noqa: E402
from bert_jax.train import step as step_lib  # noqa: E402

# ---------------------------------------------------------------------------
# The warmup-stable-decay schedule

LR, END = 1e-3, 1e-5


def _wsd(**kw):
    opt = family_config("bert", "tiny").optimizer
    opt.update(dict(learning_rate=LR, end_learning_rate=END, warmup_steps=10, schedule="wsd", decay_steps=20))
    opt.update(kw)
    return optim.make_schedule(opt, total_steps=110)


def _values(fn, steps):
    return [float(fn(s)) for s in steps]


def test_wsd_warms_up_holds_then_decays_linearly_to_the_end_rate():
    # Warmup 0-10, stable 10-90, decay 90-110, then the end rate.
    steps = [0, 5, 10, 50, 90, 95, 100, 110, 130]
    mid = END + (LR - END) * 0.5
    expected = [0.0, 5e-4, LR, LR, LR, END + (LR - END) * 0.75, mid, END, END]
    np.testing.assert_allclose(_values(_wsd(), steps), expected, rtol=1e-6, atol=1e-12)


def test_wsd_one_minus_sqrt_decay_drops_fast_then_flattens():
    # progress 1/4 of the decay: 1 - sqrt(1/4) = 1/2 of the way left.
    fn = _wsd(decay_shape="1-sqrt")
    expected = [LR, END + (LR - END) * 0.5, END + (LR - END) * (1 - np.sqrt(0.5)), END]
    np.testing.assert_allclose(_values(fn, [90, 95, 100, 110]), expected, rtol=1e-6, atol=1e-12)


def test_wsd_decay_fraction_when_decay_steps_is_zero():
    fn = _wsd(decay_steps=0, decay_fraction=0.2)  # 22 of 110 steps: decay from step 88
    np.testing.assert_allclose(_values(fn, [88, 99, 110]), [LR, END + (LR - END) * 0.5, END], rtol=1e-6)


def test_wsd_decay_fraction_fits_a_run_shorter_than_its_warmup():
    fn = _wsd(decay_steps=0, decay_fraction=0.1, warmup_steps=200)  # 110 steps, all warmup
    np.testing.assert_allclose(_values(fn, [0, 100, 110]), [0.0, 5e-4, 5.5e-4], rtol=1e-6)


def test_wsd_without_warmup_starts_at_the_peak():
    assert float(_wsd(warmup_steps=0)(0)) == pytest.approx(LR)


def test_wsd_decay_longer_than_the_run_after_warmup_is_one_config_error():
    with pytest.raises(ConfigError) as e:
        _wsd(decay_steps=101)
    assert str(e.value) == (
        "optimizer schedule 'wsd': decay of 101 steps after warmup_steps=10 exceeds total_steps=110; "
        "use decay_steps (or decay_fraction * total_steps) <= 100"
    )


def test_wsd_unknown_decay_shape_is_one_config_error():
    with pytest.raises(ConfigError, match=r"^optimizer.decay_shape='cosine'; expected one of linear, 1-sqrt$"):
        _wsd(decay_shape="cosine")


def test_wsd_decay_fraction_outside_zero_one_is_one_config_error():
    with pytest.raises(ConfigError, match=r"^optimizer.decay_fraction=1.5; use a fraction of total_steps in \[0, 1\]$"):
        _wsd(decay_steps=0, decay_fraction=1.5)


def test_other_schedules_are_unchanged_by_the_wsd_fields():
    fn = _wsd(schedule="linear")  # decay_steps is wsd's only: linear decays over all 100 steps after warmup
    np.testing.assert_allclose(_values(fn, [10, 60, 110]), [LR, (LR + END) / 2, END], rtol=1e-6)


# ---------------------------------------------------------------------------
# The published recipe in the configs


@pytest.mark.parametrize("size, peak", [("base", 8e-4), ("large", 5e-4)])
def test_modernbert_configs_hold_the_published_recipe(size, peak):
    config = family_config("modernbert", size)
    assert (config.data.masking, config.data.masked_lm_prob, config.data.mode) == ("dynamic", 0.30, "packed")
    assert (config.optimizer.schedule, config.optimizer.decay_shape) == ("wsd", "1-sqrt")
    assert config.optimizer.learning_rate == peak
    assert optim.wsd_decay_steps(config.optimizer, config.total_steps, config.optimizer.warmup_steps) == 1302
    short, long = phases.resolve_phases(config)
    assert (short.seq_len, short.masked_lm_prob, dict(short.model)) == (1024, 0.30, {"global_rope_theta": 10_000.0})
    assert (long.seq_len, long.masked_lm_prob, dict(long.model)) == (8192, 0.30, {"global_rope_theta": 160_000.0})
    assert long.stop == config.total_steps and short.stop == long.start
    # Room for 30% of a full row; the model section is the final (published) model.
    assert (short.max_predictions, long.max_predictions) == (308, 2458)
    cfg = model_config(config)
    assert (cfg.global_rope_theta, cfg.local_rope_theta) == (160_000.0, 10_000.0)
    preflight.check_step_sizes(config.batch_size, [short, long], cfg, synthetic=False)


def test_the_model_a_phase_runs_has_the_phases_rope_base_and_nothing_else_changed():
    config = family_config("modernbert", "tiny")
    cfg = model_config(config)
    first, second = (phases.phase_model_config(cfg, p) for p in phases.resolve_phases(config))
    assert first == cfg.replace(global_rope_theta=10_000.0)
    assert second == cfg  # the final phase runs the model section as it is


# ---------------------------------------------------------------------------
# Tiny packed shards (the shape of tests/test_packing.py's)

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(40)]
VOCAB = SPECIAL + WORDS
SHORT, LONG = 16, 32  # the two phases' sequence lengths
BATCH = 8


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """(vocab_file, {seq_len: shard dir}): unmasked packed rows of a corpus of
    60 documents of 4-30 words, at both phases' lengths."""
    root = tmp_path_factory.mktemp("modernbert-recipe")
    vocab = root / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(WORDS, int(rng.integers(4, 31)))) for _ in range(60)]
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    made = {}
    for seq in (SHORT, LONG):
        options = create_data.CreateDataOptions(
            vocab_file=str(vocab), max_seq_length=seq, max_predictions_per_seq=seq // 2, dupe_factor=2,
            mode="packed", masking="none", input_format="sentences", block_size=100, random_seed=1,
        )
        create_data.create_pretraining_data(options, str(corpus), str(root / f"seq{seq}"))
        made[seq] = str(root / f"seq{seq}")
    return str(vocab), made


def _tiny_recipe(vocab_file, made, **overrides):
    """modernbert_tiny's recipe, shrunk: 3 layers (0 global, 1-2 local, window
    8), 6 steps, phase 1 at seq 16 / 30% masking / RoPE base 10,000, phase 2
    at seq 32 / 15% / 160,000 (a masking schedule across phases, as mmBERT)."""
    c = family_config("modernbert", "tiny")
    c.model.update(
        num_layers=3, hidden_size=32, num_heads=2, intermediate_size=48, vocab_size=len(VOCAB),
        max_position_embeddings=64, local_attention=8, pad_token_id=0,
    )
    c.data.vocab_file = vocab_file
    c.data.shuffle_buffer = 16
    c.data.streams = 1
    c.phases = [
        dict(fraction=0.5, max_seq_length=SHORT, max_predictions_per_seq=6, masked_lm_prob=0.30,
             train_files=made[SHORT], model=dict(global_rope_theta=10_000.0)),
        dict(fraction=0.5, max_seq_length=LONG, max_predictions_per_seq=6, masked_lm_prob=0.15,
             train_files=made[LONG], model=dict(global_rope_theta=160_000.0)),
    ]
    c.batch_size = BATCH
    c.total_steps = 6
    c.log_every_steps = 1
    c.checkpoint_every_steps = 0
    c.eval_every_steps = 0
    c.eval_steps = 0
    c.optimizer.update(learning_rate=1e-2, warmup_steps=1, decay_steps=2)  # decay over steps 5-6
    c.update(overrides)
    return c


# ---------------------------------------------------------------------------
# The phase's masking rate reaches the input pipeline


def _train_batch(config, phase, split="train"):
    factory = inputs.pipeline_factory(config.data, int(config.seed), config.data.vocab_file)
    spec = phases.source_spec(BATCH, jax.sharding.SingleDeviceSharding(jax.devices()[0]), phase)
    return next(factory(spec, split, phase.train_files, None))


def _budget(batch, rate, most):
    """BERT's per-row budget: min(most, max(1, round(maskable * rate)))."""
    special = [VOCAB.index(t) for t in ("[CLS]", "[SEP]", "[PAD]")]
    # The original ids: masked positions hold [MASK] / a random id / themselves.
    ids = batch["input_ids"].copy()
    for row, (positions, originals, weights) in enumerate(
        zip(batch["masked_lm_positions"], batch["masked_lm_ids"], batch["masked_lm_weights"], strict=True)
    ):
        ids[row, positions[weights > 0]] = originals[weights > 0]
    maskable = ((batch["input_mask"] > 0) & ~np.isin(ids, special)).sum(axis=1)
    return np.minimum(most, np.maximum(1, np.round(maskable * rate))).astype(int), maskable


@pytest.mark.parametrize("index, rate", [(0, 0.30), (1, 0.15)])
def test_each_phases_masking_rate_is_the_pipelines(shards, index, rate):
    config = _tiny_recipe(*shards)
    phase = phases.resolve_phases(config)[index]
    batch = _train_batch(config, phase)
    masked = batch["masked_lm_weights"].sum(axis=1).astype(int)
    budget, maskable = _budget(batch, rate, phase.max_predictions)
    np.testing.assert_array_equal(masked, budget)
    assert masked.sum() / maskable.sum() == pytest.approx(rate, abs=0.03)


def test_held_out_data_keeps_the_data_sections_rate(shards):
    config = _tiny_recipe(*shards)
    config.data.masked_lm_prob = 0.2
    phase = phases.resolve_phases(config)[0]  # 30% for training
    batch = _train_batch(config, phase, split="eval")
    budget, _ = _budget(batch, 0.2, phase.max_predictions)
    np.testing.assert_array_equal(batch["masked_lm_weights"].sum(axis=1).astype(int), budget)


# ---------------------------------------------------------------------------
# Pre-training through both phases, and resume inside phase 2


def _losses(workdir):
    return {s: r["loss"] for s, r in metrics_log.read_metrics(str(workdir)).items()}


def _recording_step_builder(seen):
    make = step_lib.make_train_step

    def record(model_cfg, *args, **kw):
        seen.append(model_cfg.global_rope_theta)
        return make(model_cfg, *args, **kw)

    return record


@pytest.fixture(scope="module")
def straight(shards, tmp_path_factory):
    """(metrics by step, RoPE bases of the train steps built) of a run that never stops."""
    workdir = tmp_path_factory.mktemp("straight")
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(step_lib, "make_train_step", _recording_step_builder(seen))
        pretraining.train(_tiny_recipe(*shards), str(workdir))
    return metrics_log.read_metrics(str(workdir)), seen


def test_tiny_modernbert_pretrains_on_packed_rows_through_both_phases(straight):
    metrics, _ = straight
    assert sorted(metrics) == [1, 2, 3, 4, 5, 6]
    assert [metrics[s]["seq_len"] for s in sorted(metrics)] == [SHORT] * 3 + [LONG] * 3
    losses = [metrics[s]["loss"] for s in sorted(metrics)]
    assert all(np.isfinite(losses))
    assert losses[2] < losses[0]  # falling within phase 1
    # warmup 1 step, stable, 1-sqrt decay over the last 2 steps to 0 (the lr logged is the step's).
    assert [metrics[s]["learning_rate"] for s in (1, 2, 4)] == pytest.approx([0.0, 1e-2, 1e-2])


def test_the_train_step_of_phase_2_runs_the_context_extension_rope_base(straight):
    _, seen = straight
    assert seen == [10_000.0, 160_000.0]


@pytest.mark.slow
def test_a_run_stopped_inside_phase_2_resumes_with_the_same_losses(shards, straight, tmp_path):
    metrics, _ = straight
    config = _tiny_recipe(*shards)
    workdir = str(tmp_path / "stopped")
    pretraining.train(config, workdir, source_factory=_stopping_in_phase_2(config, tmp_path, after=1))
    assert max(_losses(workdir)) == 5  # step 4 is phase 2's first, 5 its second
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(step_lib, "make_train_step", _recording_step_builder(seen))
        pretraining.train(config, workdir)
    assert seen == [160_000.0]  # the resumed run starts in phase 2, with its base
    resumed = _losses(workdir)
    assert [resumed[s] for s in range(1, 7)] == [metrics[s]["loss"] for s in range(1, 7)]


def _stopping_in_phase_2(config, tmp_path, after: int):
    """The real pipeline; phase 2's training source sends SIGTERM as it hands
    out batch `after` (0-based), so the loop saves after that step."""
    base = phases.default_source_factory(config, str(tmp_path), model_config(config))

    def make(spec, split, files, state):
        source = base(spec, split, files, state)
        return _SignalAt(source, after) if split == "train" and spec.seq_len == LONG else source

    return make


class _SignalAt:
    def __init__(self, source, index):
        self.source, self.index, self.count = source, index, 0

    def __next__(self):
        if self.count == self.index:
            os.kill(os.getpid(), signal.SIGTERM)
        self.count += 1
        return next(self.source)

    def state(self):
        return self.source.state()


# ---------------------------------------------------------------------------
# Bad input: one line each


def _phase(**kw):
    return dict(fraction=1.0, max_seq_length=16, max_predictions_per_seq=8, **kw)


def _resolve(*raw, **config_overrides):
    config = family_config("modernbert", "tiny")
    config.phases = list(raw)
    for key, value in config_overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return phases.resolve_phases(config)


def test_a_phase_overriding_a_shape_changing_model_field_is_one_config_error():
    with pytest.raises(ConfigError) as e:
        _resolve(_phase(model=dict(global_rope_theta=1e5, hidden_size=64)))
    assert str(e.value) == (
        "phases[0].model overrides hidden_size; a phase may change only global_rope_theta, local_rope_theta "
        "(fields that change no parameter shape): set the others in the model section"
    )


@pytest.mark.parametrize("rate", [0.0, 1.0, 1.5, -0.1])
def test_a_phase_masking_rate_outside_zero_one_is_one_config_error(rate):
    with pytest.raises(ConfigError) as e:
        _resolve(_phase(masked_lm_prob=rate))
    assert str(e.value) == f"phases[0].masked_lm_prob={rate}; use a masking rate in (0, 1), e.g. 0.15"


def test_a_phase_masking_rate_with_static_masks_is_one_config_error():
    with pytest.raises(ConfigError) as e:
        _resolve(_phase(masked_lm_prob=0.3), **{"data.masking": "static"})
    assert str(e.value) == (
        "phases[0].masked_lm_prob=0.3 with data.masking='static': static masks are fixed in the shards; set "
        "data.masking='dynamic' (shards made unmasked) or drop the phase's masked_lm_prob"
    )


def test_a_phase_masking_rate_its_max_predictions_cannot_hold_is_one_config_error():
    _resolve(_phase(masked_lm_prob=0.6))  # 0.6 * 14 maskable = 8.4 -> 8 fits; 0.7 -> 10 does not
    with pytest.raises(ConfigError) as e:
        _resolve(_phase(masked_lm_prob=0.7))
    assert str(e.value) == (
        "phases[0].max_predictions_per_seq=8 caps masked_lm_prob=0.7 at seq 16 (a full row masks 10); "
        "set max_predictions_per_seq >= 10"
    )


def test_a_rope_base_phase_for_a_model_with_learned_positions_is_one_config_error():
    config = family_config("bert", "tiny")
    config.phases = [_phase(model=dict(global_rope_theta=160_000.0))]
    with pytest.raises(ConfigError) as e:
        phases.resolve_phases(config)
    assert str(e.value) == (
        "phases[0].model sets global_rope_theta but model.position_embedding='absolute' has no RoPE base; "
        "drop the phase's model overrides"
    )


def test_an_unknown_phase_key_is_one_config_error():
    with pytest.raises(ConfigError) as e:
        _resolve(_phase(mask_rate=0.3))
    assert str(e.value) == (
        "phases[0] has unknown key(s) 'mask_rate'; a phase takes fraction, max_seq_length, "
        "max_predictions_per_seq, train_files, eval_files, masked_lm_prob, model"
    )


def test_pretrain_refuses_a_bad_phase_in_one_line_with_status_2(tmp_path, repo_root):
    config_file = tmp_path / "bad_phase.py"
    config_file.write_text(
        "from bert_jax.config import family_config\n\n\n"
        "def get_config():\n"
        "    c = family_config('modernbert', 'tiny')\n"
        "    c.data.synthetic = True\n"
        "    c.phases = [dict(fraction=1.0, max_seq_length=16, max_predictions_per_seq=8,\n"
        "                     model=dict(num_layers=2))]\n"
        "    return c\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "pretrain", f"--config={config_file}", f"--workdir={tmp_path / 'w'}"],
        cwd=repo_root, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "bert-jax pretrain: error: phases[0].model overrides num_layers; a phase may change only "
        "global_rope_theta, local_rope_theta (fields that change no parameter shape): set the others in the "
        "model section"
    ]
    assert not (tmp_path / "w").exists()
