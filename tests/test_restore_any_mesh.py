"""A checkpoint saved under one mesh restores under any other that divides the
devices, with orbax placing each array straight into its new sharding, and
training continues as if the mesh had never changed."""

import os
import subprocess
import sys

import numpy as np
import pytest
from train_utils import tiny_config
from xla_env import xla_flags

from bert_jax.errors import CheckpointError
from bert_jax.train import evaluate, metrics_log, pretraining

FSDP = {"mesh.data": 1, "mesh.fsdp": -1, "mesh.tensor": 1}  # fsdp=8
DP_TP = {"mesh.data": 2, "mesh.fsdp": 1, "mesh.tensor": 4}


def _losses(workdir) -> list[float]:
    metrics = metrics_log.read_metrics(str(workdir))
    return [metrics[s]["loss"] for s in sorted(metrics)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four steps on fsdp=8 straight; and two on fsdp=8, then two more after
    restoring on data=2 x tensor=4."""
    root = tmp_path_factory.mktemp("any_mesh")
    straight, moved = root / "straight", root / "moved"
    pretraining.train(tiny_config(total_steps=4, **FSDP), str(straight))
    pretraining.train(tiny_config(total_steps=2, **FSDP), str(moved))
    pretraining.train(tiny_config(total_steps=4, **DP_TP), str(moved))
    return straight, moved


def test_training_continues_on_another_mesh_with_the_same_losses(runs):
    straight, moved = runs
    np.testing.assert_allclose(_losses(moved), _losses(straight), rtol=2e-5)
    assert len(_losses(moved)) == 4


def test_a_checkpoint_of_eight_devices_evaluates_on_one(runs, repo_root):
    straight, _ = runs
    config = evaluate.load_workdir_config(str(straight))
    eight = evaluate.evaluate_workdir(config, str(straight))
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices=1))
    out = subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "evaluate", f"--workdir={straight}",
         "--config.mesh.data=-1", "--config.mesh.fsdp=1", "--config.mesh.tensor=1"],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    one = json.loads((straight / "eval_4.json").read_text())
    assert one["mlm_loss"] == pytest.approx(eight["mlm_loss"], rel=1e-5)


def test_a_mesh_whose_tensor_axis_splits_no_head_evenly_still_restores(runs, tmp_path):
    """tensor=8 does not divide the tiny model's 4 heads: those dimensions stay
    replicated (sharding._fit), and the checkpoint still places."""
    straight, _ = runs
    config = evaluate.load_workdir_config(str(straight))
    config.mesh.update({"data": 1, "fsdp": 1, "tensor": 8})
    result = evaluate.evaluate_workdir(config, str(straight))
    assert np.isfinite(result["mlm_loss"])


def test_a_checkpoint_that_cannot_be_placed_names_the_parameter(runs):
    """A model of another shape in the same workdir: the parameter and both shapes are named."""
    straight, _ = runs
    config = evaluate.load_workdir_config(str(straight))
    config.model.hidden_size = 64
    config.model.intermediate_size = 128
    with pytest.raises(CheckpointError, match=r"\['bert'\]\['embeddings'\]\['LayerNorm'\]\['bias'\] has shape \(32,\) "
                       r"but the config's model needs \(64,\)"):
        evaluate.evaluate_workdir(config, str(straight))
