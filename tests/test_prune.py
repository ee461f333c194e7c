"""Pruning: magnitude masks and schedule, head importance, head-pruned model
equal to the masked-head model, pruned checkpoints, bad sparsities."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import toy_tasks

from bert_jax.compress import models, prune
from bert_jax.compress.config import prune_config
from bert_jax.errors import ConfigError, UserError
from bert_jax.model import BertForSequenceClassification

CFG = toy_tasks.tiny_config(vocab_size=50, num_layers=2, hidden_size=32, num_heads=4)


@pytest.fixture(scope="module")
def params():
    return toy_tasks.init_params(CFG, seed=0)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 50, (4, 10)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[0, 6:] = 0  # one padded row
    return {"input_ids": ids, "input_mask": mask, "segment_ids": np.zeros_like(ids),
            "labels": np.array([0, 1, 1, 0], np.int32)}


def _apply(params, batch):
    model = BertForSequenceClassification(CFG)
    return np.asarray(model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"]))


def test_head_pruned_model_equals_masked_head_model(params, batch):
    keep = [[0, 2], [3]]
    masked = _apply(prune.mask_heads(params, keep), batch)
    small = prune.shrink_heads(params, keep)
    assert prune.head_counts(small) == (2, 1)
    assert small["bert"]["encoder"]["layer_0"]["attention"]["query"]["kernel"].shape == (32, 2, 8)
    assert small["bert"]["encoder"]["layer_1"]["attention"]["output"]["kernel"].shape == (1, 8, 32)
    pruned = np.asarray(prune.pruned_logits_fn(CFG, (2, 1))(small, batch["input_ids"], batch["input_mask"],
                                                            batch["segment_ids"]))
    np.testing.assert_allclose(pruned, masked, atol=1e-5)
    # ... and pruning changed something, so the comparison means something.
    assert np.abs(masked - _apply(params, batch)).max() > 1e-6


def test_keeping_every_head_changes_nothing(params, batch):
    keep = [[0, 1, 2, 3]] * 2
    np.testing.assert_allclose(_apply(prune.mask_heads(params, keep), batch), _apply(params, batch), atol=1e-6)


def test_head_gate_gradient_is_the_gate_derivative(params, batch):
    """sum(W_o[h] * dL/dW_o[h]) equals d/dg of the loss with head h's rows scaled by g, at g=1."""
    model = BertForSequenceClassification(CFG)

    def loss(p):
        logits = model.apply({"params": p}, batch["input_ids"], batch["input_mask"], batch["segment_ids"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

    def gated(g):
        kernel = params["bert"]["encoder"]["layer_1"]["attention"]["output"]["kernel"]
        scaled = kernel.at[2].multiply(g) if isinstance(kernel, jax.Array) else jnp.asarray(kernel).at[2].multiply(g)
        p = jax.tree.map(lambda x: x, params)
        p["bert"]["encoder"]["layer_1"]["attention"]["output"]["kernel"] = scaled
        return loss(p)

    expected = jax.grad(gated)(1.0)
    got = prune.head_gates_gradient(params, jax.grad(loss)(params))
    np.testing.assert_allclose(got[1, 2], expected, rtol=1e-4, atol=1e-7)


def test_heads_to_keep_drops_the_least_important_globally():
    importance = np.array([[0.9, 0.1, 0.5, 0.4], [0.05, 0.8, 0.3, 0.7]])
    assert prune.heads_to_keep(importance, 0.25) == [[0, 2, 3], [1, 2, 3]]
    assert prune.heads_to_keep(importance, 0.0) == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_heads_to_keep_leaves_every_layer_a_head():
    importance = np.array([[0.1, 0.2], [0.9, 0.8]])
    assert prune.heads_to_keep(importance, 0.75) == [[1], [0]]


def test_head_importance_is_normalised_per_layer(params, batch):
    scores = prune.head_importance(CFG, params, [batch])
    assert scores.shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(scores, axis=1), 1.0, rtol=1e-5)


def test_magnitude_masks_prune_the_smallest_entries():
    w = np.arange(1, 11, dtype=np.float32).reshape(2, 5) * np.array([1, -1, 1, -1, 1], np.float32)
    tree = {"bert": {"encoder": {"layer_0": {"intermediate": {"kernel": w, "bias": np.ones(5, np.float32)}}}}}
    masks = prune.magnitude_masks(tree, 0.3)
    kept = np.asarray(masks["bert"]["encoder"]["layer_0"]["intermediate"]["kernel"])
    np.testing.assert_array_equal(kept.ravel(), [0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(masks["bert"]["encoder"]["layer_0"]["intermediate"]["bias"], 1.0)


def test_sparsity_schedule_is_cubic_from_begin_to_end():
    assert float(prune.sparsity_at(0, 0.9, 10, 20)) == 0.0
    assert float(prune.sparsity_at(15, 0.8, 10, 20)) == pytest.approx(0.8 * (1 - 0.5**3))
    assert float(prune.sparsity_at(25, 0.9, 10, 20)) == pytest.approx(0.9)


def test_magnitude_pruning_transform_reaches_target_sparsity(params):
    tx = optax.chain(optax.sgd(1e-3), prune.magnitude_pruning(0.7, begin_step=0, end_step=3))
    p = jax.tree.map(jnp.asarray, params)
    state = tx.init(p)
    grads = jax.tree.map(jnp.ones_like, p)
    for _ in range(4):
        updates, state = tx.update(grads, state, p)
        p = optax.apply_updates(p, updates)
    assert prune.measured_sparsity(p) == pytest.approx(0.7, abs=0.01)
    # Embeddings are never pruned.
    assert np.count_nonzero(np.asarray(p["bert"]["embeddings"]["word_embeddings"]["embedding"]) == 0) == 0


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval_is_refused(bad):
    with pytest.raises(ConfigError, match=r"outside \[0, 1\)"):
        prune.check_sparsity(bad)
    with pytest.raises(UserError, match=r"outside \[0, 1\)"):
        prune.magnitude_pruning(bad, 0, 10)


def test_head_fraction_outside_unit_interval_is_refused():
    with pytest.raises(ConfigError, match="heads_fraction"):
        prune.heads_to_keep(np.ones((2, 4)), 1.0)


def test_pruned_checkpoint_round_trips(tmp_path, params, batch):
    keep = [[1, 3], [0, 1, 2]]
    small = prune.shrink_heads(params, keep)
    prune.save_pruned(tmp_path / "pruned", CFG, small, keep)
    cfg, loaded, heads, _ = prune.load_pruned(tmp_path / "pruned")
    # model_config.json names the head counts the params have (load_model rebuilds from it).
    assert heads == (2, 3) and cfg == models.head_pruned_config(CFG, (2, 3))
    fn = prune.pruned_logits_fn(cfg, heads)
    args = (batch["input_ids"], batch["input_mask"], batch["segment_ids"])
    np.testing.assert_allclose(np.asarray(fn(loaded, *args)), np.asarray(fn(small, *args)), atol=1e-6)


# --------------------------------------------------------------------------
# The job, on a toy SST-2: pruning with recovery fine-tuning


@pytest.fixture(scope="module")
def toy_teacher(tmp_path_factory):
    _, _, cfg, teacher = toy_tasks.write_teacher(tmp_path_factory.mktemp("prune"), n_train=32, n_dev=16)
    return teacher, cfg


def test_head_pruning_with_recovery_fine_tunes_the_shrunk_model(toy_teacher, tmp_path):
    workdir, cfg = toy_teacher
    results = prune.run(prune_config(method="heads", sparsity=0.5, steps=2, batch_size=8, learning_rate=1e-2, importance_steps=2, throughput_runs=1), str(workdir), str(tmp_path / "out"))
    assert results["pruned"]["heads_per_layer"] == [2, 2] and results["recovery_steps"] == 2
    for side in ("dense", "one_shot", "pruned"):
        assert 0.0 <= results[side]["accuracy"] <= 1.0
    assert results["dense"]["examples_per_s"] > 0 and results["pruned"]["examples_per_s"] > 0
    _, recovered, heads, _ = prune.load_pruned(tmp_path / "out")
    assert heads == (2, 2)
    # The saved weights are the fine-tuned ones, not the one-shot slice.
    _, dense, _, _ = models.load_finetuned_classifier(workdir)
    keep = json.loads((tmp_path / "out" / prune.PRUNED_HEADS_FILE).read_text())["kept_heads"]
    one_shot = prune.shrink_heads(dense, keep)
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), recovered, one_shot)
    assert max(jax.tree.leaves(moved)) > 0


def test_magnitude_pruning_with_recovery_reaches_the_target(toy_teacher, tmp_path):
    workdir, _ = toy_teacher
    results = prune.run(prune_config(method="magnitude", sparsity=0.5, steps=3, batch_size=8, learning_rate=1e-2, throughput_runs=1), str(workdir), str(tmp_path / "out"))
    assert results["pruned"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert set(results["one_shot"]) == set(results["pruned"]) - {"examples_per_s", "sparsity"}


def test_negative_recovery_steps_are_refused(toy_teacher, tmp_path):
    workdir, _ = toy_teacher
    with pytest.raises(UserError, match="--config.steps=-1"):
        prune.run(prune_config(method="heads", sparsity=0.5, steps=-1), str(workdir), str(tmp_path / "out"))
