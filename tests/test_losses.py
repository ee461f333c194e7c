"""bert_jax.losses, every training objective, against hand computations:
pre-training's MLM and pair sums, general (MLM) distillation, the task heads'
losses and task distillation's soft, hidden-state and attention-map terms."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from bert_jax import losses


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# ---------------------------------------------------------------- pre-training


def _pretraining_outputs_and_batch():
    mlm = np.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], np.float32)  # [batch 1, P 2, vocab 3]
    pair = np.array([[0.0, 1.0]], np.float32)
    batch = {
        "masked_lm_ids": jnp.array([[0, 0]]),
        "masked_lm_weights": jnp.array([[1.0, 0.0]]),  # the second position is padding
        "next_sentence_labels": jnp.array([1]),
    }
    return {"mlm_logits": jnp.asarray(mlm), "pair_logits": jnp.asarray(pair)}, batch


def test_pretraining_sums_count_only_weighted_positions():
    outputs, batch = _pretraining_outputs_and_batch()
    sums = losses.pretraining_sums(outputs, batch, pair_head=True)
    assert float(sums["mlm_loss_sum"]) == pytest.approx(-_log_softmax([2.0, 0.0, 0.0])[0], rel=1e-6)
    assert float(sums["mlm_correct_sum"]) == 1.0 and float(sums["mlm_weight_sum"]) == 1.0
    assert float(sums["nsp_loss_sum"]) == pytest.approx(-_log_softmax([0.0, 1.0])[1], rel=1e-6)
    assert float(sums["nsp_correct_sum"]) == 1.0 and float(sums["nsp_count"]) == 1.0


def test_pretraining_sums_without_a_pair_head_have_no_pair_terms():
    outputs, batch = _pretraining_outputs_and_batch()
    assert set(losses.pretraining_sums(outputs, batch, pair_head=False)) == {
        "mlm_loss_sum", "mlm_correct_sum", "mlm_weight_sum"}


def test_pretraining_metrics_add_the_pair_loss_and_survive_no_masked_position():
    sums = {"mlm_loss_sum": jnp.float32(6.0), "mlm_correct_sum": jnp.float32(1.0), "mlm_weight_sum": jnp.float32(3.0),
            "nsp_loss_sum": jnp.float32(1.0), "nsp_correct_sum": jnp.float32(1.0), "nsp_count": jnp.float32(2.0)}
    m = losses.pretraining_metrics(sums)
    assert float(m["mlm_loss"]) == 2.0 and float(m["nsp_loss"]) == 0.5 and float(m["loss"]) == 2.5
    assert float(m["mlm_accuracy"]) == pytest.approx(1 / 3) and float(m["nsp_accuracy"]) == 0.5
    empty = losses.pretraining_metrics({"mlm_loss_sum": jnp.float32(0.0), "mlm_correct_sum": jnp.float32(0.0),
                                        "mlm_weight_sum": jnp.float32(0.0)})
    assert float(empty["loss"]) == 0.0  # 0 / max(0, 1e-5), not NaN


# ---------------------------------------------------------------- general (MLM) distillation


def test_kl_sum_by_hand_ignores_weight_zero_positions():
    s = np.array([[[1.0, 2.0, 0.0], [5.0, -3.0, 9.0]]], np.float32)  # [batch 1, P 2, vocab 3]
    t = np.array([[[0.0, 3.0, 1.0], [0.0, 0.0, 0.0]]], np.float32)
    w = np.array([[1.0, 0.0]], np.float32)
    temperature = 2.0
    log_p, log_q = _log_softmax(t[0, 0] / temperature), _log_softmax(s[0, 0] / temperature)
    expected = float(np.sum(np.exp(log_p) * (log_p - log_q)))  # 0.03950... nats
    got = float(losses.mlm_kl_sum(jnp.asarray(s), jnp.asarray(t), jnp.asarray(w), temperature))
    assert got == pytest.approx(expected, rel=1e-5)
    assert got > 0.01


def test_loss_mixes_soft_and_hard_and_keeps_the_pair_loss():
    metrics = {"mlm_loss": jnp.float32(3.0), "nsp_loss": jnp.float32(0.5), "loss": jnp.float32(3.5)}
    out = losses.mlm_distill_metrics(metrics, kl_sum=jnp.float32(0.6), weight_sum=jnp.float32(3.0),
                                     temperature=2.0, alpha=0.25)
    assert float(out["mlm_kl"]) == pytest.approx(0.2)
    assert float(out["loss"]) == pytest.approx(0.25 * 4 * 0.2 + 0.75 * 3.0 + 0.5)
    assert float(out["mlm_loss"]) == 3.0  # the hard loss is still reported as such


# ---------------------------------------------------------------- task heads


def test_task_loss_classification_ignores_weight_zero_examples():
    logits = jnp.array([[2.0, 0.0], [0.0, 9.0]])
    batch = {"labels": jnp.array([0, 0]), "weights": jnp.array([1.0, 0.0])}
    expected = -_log_softmax([2.0, 0.0])[0]
    assert float(losses.task_loss("classification", logits, batch)) == pytest.approx(expected, rel=1e-6)


def test_task_loss_token_ignores_positions_labelled_minus_one():
    logits = jnp.array([[[1.0, 0.0], [0.0, 5.0]]])  # [batch 1, seq 2, labels 2]
    batch = {"labels": jnp.array([[0, -1]]), "weights": jnp.array([[1.0, 0.0]])}
    expected = -_log_softmax([1.0, 0.0])[0]
    assert float(losses.task_loss("token", logits, batch)) == pytest.approx(expected, rel=1e-6)


def test_task_loss_regression_is_the_weighted_squared_error():
    outputs = jnp.array([[1.0], [3.0], [100.0]])
    batch = {"labels": jnp.array([2.0, 1.0, 0.0]), "weights": jnp.array([1.0, 1.0, 0.0])}
    assert float(losses.task_loss("regression", outputs, batch)) == pytest.approx((1 + 4) / 2)


def test_task_loss_span_is_the_mean_of_start_and_end():
    start, end = jnp.array([[1.0, 0.0, 0.0]]), jnp.array([[0.0, 0.0, 2.0]])
    batch = {"start_positions": jnp.array([0]), "end_positions": jnp.array([2]), "weights": jnp.array([1.0])}
    expected = (-_log_softmax([1.0, 0.0, 0.0])[0] - _log_softmax([0.0, 0.0, 2.0])[2]) / 2
    assert float(losses.task_loss("span", (start, end), batch)) == pytest.approx(expected, rel=1e-6)


def test_weighted_mean_of_no_weight_is_zero_not_nan():
    assert float(losses.weighted_mean(jnp.array([5.0]), jnp.array([0.0]))) == 0.0


# ---------------------------------------------------------------- task distillation


def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def test_soft_target_loss_by_hand():
    s, t, temp = np.array([1.0, 2.0, 0.5]), np.array([0.3, 2.5, -1.0]), 2.0
    p, q = _softmax(t / temp), _softmax(s / temp)
    expected = temp**2 * sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    got = losses.soft_target_loss(jnp.asarray(s[None]), jnp.asarray(t[None]), temp)
    assert float(got[0]) == pytest.approx(expected, rel=1e-5)


def test_soft_target_loss_is_zero_for_equal_logits():
    x = jnp.array([[0.1, -2.0], [3.0, 1.0]])
    np.testing.assert_allclose(losses.soft_target_loss(x, x, 3.0), 0.0, atol=1e-6)


def test_distillation_loss_mixes_soft_and_hard_by_alpha():
    s = np.array([[2.0, 0.0], [0.0, 1.0]])
    t = np.array([[1.0, 1.0], [-1.0, 1.0]])
    labels, weights, temp, alpha = np.array([0, 1]), np.array([1.0, 1.0]), 1.0, 0.25
    soft = np.mean([sum(p * math.log(p / q) for p, q in zip(_softmax(ti), _softmax(si), strict=True))
                    for si, ti in zip(s, t, strict=True)])
    hard = np.mean([-math.log(_softmax(si)[y]) for si, y in zip(s, labels, strict=True)])
    got = losses.distillation_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels), jnp.asarray(weights),
                                    temp, alpha)
    assert float(got) == pytest.approx(alpha * soft + (1 - alpha) * hard, rel=1e-5)


def test_distillation_loss_ignores_weight_zero_rows():
    s, t = jnp.array([[2.0, 0.0], [9.0, -9.0]]), jnp.array([[1.0, 1.0], [-9.0, 9.0]])
    labels = jnp.array([0, 1])
    one = losses.distillation_loss(s[:1], t[:1], labels[:1], jnp.ones(1), 2.0, 0.5)
    both = losses.distillation_loss(s, t, labels, jnp.array([1.0, 0.0]), 2.0, 0.5)
    assert float(both) == pytest.approx(float(one), rel=1e-6)


def test_hidden_state_loss_by_hand_with_projection_and_padding():
    student = [jnp.ones((1, 2, 2))]
    teacher = [jnp.array([[[1.0, 2.0, 3.0], [100.0, 100.0, 100.0]]])]
    projection = {"kernel": jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "bias": jnp.zeros(3)}
    mask = jnp.array([[1, 0]])  # the second token is padding
    # projected student token 0 = [1, 1, 0]; squared error vs [1, 2, 3] = 0 + 1 + 9 over 3 values.
    assert float(losses.hidden_state_loss(student, teacher, mask, projection)) == pytest.approx(10 / 3)


def test_attention_map_loss_is_zero_for_equal_maps_and_positive_otherwise():
    q = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 2, 3)), jnp.float32)
    k = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 2, 3)), jnp.float32)
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 1, 1]])
    a = losses.attention_probs(q, k, mask)
    np.testing.assert_allclose(a[0, :, :, 3], 0.0)  # padded keys get no attention
    assert float(losses.attention_map_loss([a], [a], mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.attention_map_loss([losses.attention_probs(k, q, mask)], [a], mask)) > 0
