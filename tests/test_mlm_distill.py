"""General distillation during pre-training (config.distill): the teacher's
parameters sharded like the student's, a tiny run whose loss falls, and each
bad input (the soft MLM loss itself: tests/test_losses.py)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from train_utils import TINY_MODEL, tiny_config

from bert_jax import checkpoints
from bert_jax.config import model_config
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.model import (
    BertForPreTraining,
    BertForSequenceClassification,
    ModelConfig,
    dummy_pretraining_inputs,
)
from bert_jax.train import metrics_log, mlm_distill, pretraining, sharding
from bert_jax.train import state as state_lib
from bert_jax.train import step as step_lib

CFG = ModelConfig(**TINY_MODEL, hidden_dropout=0.0, attention_dropout=0.0)
PEAKED_TOKEN = 7


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _pretraining_params(cfg, seed=0):
    inputs = dummy_pretraining_inputs(1, 8, 2)
    params = BertForPreTraining(cfg).init(jax.random.PRNGKey(seed), **inputs, deterministic=True)["params"]
    return jax.tree.map(np.array, nn.meta.unbox(params))  # writable copies


@pytest.fixture(scope="module")
def peaked_teacher(tmp_path_factory):
    """A tiny pre-training checkpoint whose MLM head strongly prefers one token."""
    params = _pretraining_params(CFG, seed=1)
    params["mlm"]["bias"][PEAKED_TOKEN] = 8.0
    return checkpoints.save_model(tmp_path_factory.mktemp("teacher") / "model", CFG, params)


def _distill_section(teacher, temperature=2.0, alpha=0.5):
    return ml_collections.ConfigDict({"teacher": str(teacher), "temperature": temperature, "alpha": alpha})


def _batch(seed=0, batch=4, seq=16, pred=4):
    rng = np.random.default_rng(seed)
    return {
        "input_ids": jnp.asarray(rng.integers(5, CFG.vocab_size, (batch, seq)), jnp.int32),
        "input_mask": jnp.ones((batch, seq), jnp.int32),
        "segment_ids": jnp.zeros((batch, seq), jnp.int32),
        "masked_lm_positions": jnp.asarray(rng.integers(1, seq, (batch, pred)), jnp.int32),
        "masked_lm_ids": jnp.asarray(rng.integers(5, CFG.vocab_size, (batch, pred)), jnp.int32),
        "masked_lm_weights": jnp.asarray([[1.0, 1.0, 1.0, 0.0]] * batch, jnp.float32),
        "next_sentence_labels": jnp.asarray(rng.integers(0, 2, (batch,)), jnp.int32),
    }


def _step_metrics(student, teacher_cfg, teacher, alpha, temperature=2.0, accum_steps=1):
    tx = optax.sgd(0.0)
    state = state_lib.TrainState(step=jnp.int32(0), params=student, opt_state=tx.init(student),
                                 rng=jax.random.PRNGKey(0))
    distill = step_lib.MlmDistill(teacher_cfg, temperature, alpha)
    step = jax.jit(functools.partial(step_lib.train_step, model_cfg=CFG, tx=tx, distill=distill,
                                     accum_steps=accum_steps))
    _, metrics = step(state, _batch(), jax.random.PRNGKey(0), teacher)
    return metrics


def test_step_loss_against_the_teachers_forward_pass_by_hand():
    student = _pretraining_params(CFG, seed=0)
    teacher_cfg = CFG.replace(pair_head="none")
    teacher = _pretraining_params(teacher_cfg, seed=3)
    metrics = _step_metrics(student, teacher_cfg, teacher, alpha=0.5)
    batch = _batch()
    args = [batch[k] for k in ("input_ids", "input_mask", "segment_ids", "masked_lm_positions")]
    s = BertForPreTraining(CFG).apply({"params": student}, *args)["mlm_logits"]
    t = BertForPreTraining(teacher_cfg).apply({"params": teacher}, *args)["mlm_logits"]
    log_p, log_q = _log_softmax(np.asarray(t) / 2.0), _log_softmax(np.asarray(s) / 2.0)
    kl = np.sum(np.exp(log_p) * (log_p - log_q), -1)
    w = np.asarray(batch["masked_lm_weights"])
    expected_kl = float((kl * w).sum() / w.sum())
    assert float(metrics["mlm_kl"]) == pytest.approx(expected_kl, rel=1e-4)
    expected = 0.5 * 4 * expected_kl + 0.5 * float(metrics["mlm_loss"]) + float(metrics["nsp_loss"])
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)


def test_gradient_accumulation_gives_the_same_distillation_loss():
    student = _pretraining_params(CFG, seed=0)
    teacher_cfg = CFG.replace(pair_head="none")
    teacher = _pretraining_params(teacher_cfg, seed=3)
    whole = _step_metrics(student, teacher_cfg, teacher, alpha=0.5)
    halves = _step_metrics(student, teacher_cfg, teacher, alpha=0.5, accum_steps=2)
    for key in ("loss", "mlm_kl", "mlm_loss", "grad_norm"):
        # Two micro-batches sum in another order than one batch: float32 rounding (1.3e-5 seen).
        assert float(halves[key]) == pytest.approx(float(whole[key]), rel=1e-4), key


def test_a_teacher_equal_to_the_student_adds_no_soft_loss():
    student = _pretraining_params(CFG, seed=0)
    metrics = _step_metrics(student, CFG, student, alpha=1.0)
    assert float(metrics["mlm_kl"]) == pytest.approx(0.0, abs=1e-6)
    assert float(metrics["loss"]) == pytest.approx(float(metrics["nsp_loss"]), abs=1e-5)


# ---------------------------------------------------------------------------
# Loading, sharding, training


def test_teacher_params_take_the_students_shardings(peaked_teacher):
    config = tiny_config(**{"mesh.data": 1, "mesh.fsdp": 2, "mesh.tensor": 4})
    config.distill = _distill_section(peaked_teacher)
    student_cfg = model_config(config)
    mesh = sharding.make_mesh(config.mesh)
    options = mlm_distill.step_options(config, student_cfg, mesh, None, 16)
    assert options["distill"].teacher_cfg.pair_head == "none"
    student = checkpoints.flatten_params(state_lib.param_shardings(student_cfg, mesh))
    teacher = checkpoints.flatten_params(options["teacher_params"])
    assert set(teacher) == {k for k in student if k[0] != "pair" and k[:2] != ("bert", "pooler")}
    for key, value in teacher.items():
        assert value.sharding.is_equivalent_to(student[key], value.ndim), key
    # ... and some of them really are split over the mesh.
    assert any(len(v.sharding.device_set) > 1 and not v.sharding.is_fully_replicated for v in teacher.values())


def test_off_when_no_teacher_is_named():
    config = tiny_config()
    mesh = sharding.make_mesh(config.mesh)
    assert mlm_distill.step_options(config, model_config(config), mesh, None, 16) == {}
    del config["distill"]  # a config.json written before the distill section existed
    assert mlm_distill.step_options(config, model_config(config), mesh, None, 16) == {}


def test_tiny_distillation_run_learns_the_teachers_predictions(peaked_teacher, tmp_path):
    """alpha=1: the loss is the soft loss alone; the student learns the
    teacher's preference for one token, so the loss falls."""
    config = tiny_config(total_steps=12, **{"optimizer.learning_rate": 1e-2})
    config.distill = _distill_section(peaked_teacher, alpha=1.0)
    pretraining.train(config, str(tmp_path / "run"))
    logged = metrics_log.read_metrics(str(tmp_path / "run"))
    first, last = logged[1], logged[12]
    assert first["loss"] == pytest.approx(4 * first["mlm_kl"] + first["nsp_loss"], rel=1e-4)
    assert last["mlm_kl"] < 0.5 * first["mlm_kl"]
    assert last["loss"] < first["loss"]


# ---------------------------------------------------------------------------
# Bad input


def _options(teacher, student_cfg=CFG, max_seq_len=16, **section):
    config = tiny_config()
    config.distill = _distill_section(teacher, **section)
    return mlm_distill.step_options(config, student_cfg, sharding.make_mesh(config.mesh), None, max_seq_len)


def test_teacher_with_another_vocab_size_is_refused(peaked_teacher):
    with pytest.raises(ConfigError, match=r"vocab_size=128 but the student's model.vocab_size=256"):
        _options(peaked_teacher, student_cfg=CFG.replace(vocab_size=256))


def test_teacher_with_another_vocab_file_of_the_same_size_is_refused(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("[PAD]\nx\n")
    b.write_text("[PAD]\ny\n")
    with pytest.raises(ConfigError, match="different tokens"):
        mlm_distill.check_vocab("T", CFG, CFG, str(a), str(b))
    mlm_distill.check_vocab("T", CFG, CFG, str(a), str(a))  # the same file is fine


def test_teacher_without_an_mlm_head_is_refused(tmp_path):
    inputs = dummy_pretraining_inputs(1, 8, 2)
    classifier = BertForSequenceClassification(CFG).init(
        jax.random.PRNGKey(0), inputs["input_ids"], inputs["input_mask"], inputs["segment_ids"]
    )
    path = checkpoints.save_model(tmp_path / "clf", CFG, classifier)
    with pytest.raises(CheckpointError, match="has no MLM head"):
        _options(path)


def test_teacher_with_too_few_positions_is_refused(peaked_teacher):
    with pytest.raises(ConfigError, match="has 32 positions but the student trains at seq 64"):
        _options(peaked_teacher, max_seq_len=64)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("temperature", 0.0, r"distill.temperature=0.0; it must be > 0"),
    ("alpha", 1.5, r"distill.alpha=1.5 is outside \[0, 1\]"),
    ("alpha", -0.1, r"distill.alpha=-0.1 is outside \[0, 1\]"),
])
def test_out_of_range_settings_are_refused(peaked_teacher, field, value, message):
    with pytest.raises(ConfigError, match=message):
        _options(peaked_teacher, **{field: value})


def test_pretrain_refuses_a_bad_teacher_before_the_first_step(peaked_teacher, tmp_path):
    config = tiny_config(**{"model.vocab_size": 256})
    config.distill = _distill_section(peaked_teacher)
    with pytest.raises(ConfigError, match="must share one vocabulary"):
        pretraining.train(config, str(tmp_path / "run"))
    assert metrics_log.read_metrics(str(tmp_path / "run")) == {}
