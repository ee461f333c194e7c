"""Predict mode runs a fine-tuned checkpoint as the run's config says: the
checkpoint holds the architecture and weights, `config.dtype` the compute dtype."""

import jax.numpy as jnp
import numpy as np
import pytest
import toy_tasks

from bert_jax.finetune import trainer
from bert_jax.model import Execution


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    _, _, _, workdir = toy_tasks.write_teacher(tmp_path_factory.mktemp("predict"), n_train=8, n_dev=8, num_layers=1)
    return workdir / trainer.BEST_DIR


def _logits(restored):
    ids = np.full((2, 8), 5, np.int32)
    return restored.model.apply({"params": restored.params}, ids, np.ones_like(ids), np.zeros_like(ids))


def test_a_restored_checkpoint_computes_in_float32_by_default(best):
    assert _logits(trainer.restore(best)).dtype == jnp.float32


def test_a_restored_checkpoint_computes_in_the_execution_dtype(best):
    default = np.asarray(_logits(trainer.restore(best)))
    half = _logits(trainer.restore(best, execution=Execution(dtype="bfloat16")))
    assert half.dtype == jnp.float32  # the head hands logits back in float32 either way
    assert not np.array_equal(np.asarray(half), default)  # computed in bfloat16: rounded
    np.testing.assert_allclose(np.asarray(half), default, atol=0.02)
