"""Orbax training checkpoints: layout, keep-last-K, atomicity, a failed
save, restore onto another mesh, and a checkpoint of another model shape."""

import errno
import os
import shutil

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from train_utils import PRED, SEQ, tiny_config

from bert_jax import checkpoints
from bert_jax.config import model_config
from bert_jax.errors import CheckpointError
from bert_jax.train import optim, resume, sharding, state


def _mesh(data=1, fsdp=1, tensor=1):
    n = data * fsdp * tensor
    return sharding.make_mesh(
        ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "tensor": tensor}), devices=jax.devices()[:n]
    )


def _abstract(mesh, **model):
    config = tiny_config(**{f"model.{k}": v for k, v in model.items()})
    opt = optim.make_optimizer(config.optimizer, 10)
    return state.abstract_state(model_config(config), opt, mesh, SEQ, PRED)[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir with steps 1, 2, 3 saved from an FSDP=8 state (keep 2)."""
    workdir = tmp_path_factory.mktemp("ckpt")
    config = tiny_config()
    opt = optim.make_optimizer(config.optimizer, 10)
    train_state, _ = state.create_sharded_state(model_config(config), opt, _mesh(fsdp=8), SEQ, PRED, seed=0)
    ckpt = resume.Checkpointer(workdir / "checkpoints", keep=2)
    for s in (1, 2, 3):
        ckpt.save(s, train_state, {"batches": s})
    ckpt.close()
    (workdir / "config.json").write_text(config.to_json())
    return workdir, jax.device_get(train_state.params)


def test_layout_and_keep_last_k(saved):
    workdir, _ = saved
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "3"]
    assert {"state", "data"} <= set(os.listdir(workdir / "checkpoints" / "3"))


@pytest.mark.parametrize("mesh_sizes", [(1, 1, 1), (2, 1, 4)], ids=["1 device", "DP=2xTP=4"])
def test_restore_onto_another_mesh(saved, mesh_sizes):
    workdir, params = saved
    mesh = _mesh(*mesh_sizes)
    ckpt = resume.Checkpointer(workdir / "checkpoints")
    restored, data = ckpt.restore(3, _abstract(mesh))
    ckpt.close()
    assert data == {"batches": 3}
    query = restored.params["bert"]["encoder"]["layer_0"]["attention"]["query"]["kernel"]
    assert query.sharding.mesh.shape == mesh.shape
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params), params)
    assert int(restored.step) == 0


def test_load_model_reads_a_training_workdir(saved):
    workdir, params = saved
    cfg, loaded, meta = checkpoints.load_model(workdir)
    assert meta["step"] == 3 and cfg.hidden_size == 32
    np.testing.assert_array_equal(loaded["mlm"]["bias"], params["mlm"]["bias"])


def test_checkpoint_of_another_model_shape_names_the_param(saved):
    workdir, _ = saved
    ckpt = resume.Checkpointer(workdir / "checkpoints")
    with pytest.raises(
        CheckpointError,
        match=r"\[.params.\]\[.bert.\]\[.embeddings.\]\[.LayerNorm.\]\[.bias.\] has shape \(32,\) but the config.s model needs \(64,\)",
    ):
        ckpt.restore(3, _abstract(_mesh(), hidden_size=64, intermediate_size=128))
    ckpt.close()


def test_unfinished_save_is_never_the_latest(saved):
    """orbax writes into a temporary directory and renames it when complete."""
    workdir, _ = saved
    tmp = workdir / "checkpoints" / "9.orbax-checkpoint-tmp-1234"
    (tmp / "state").mkdir(parents=True)
    try:
        ckpt = resume.Checkpointer(workdir / "checkpoints")
        assert ckpt.latest_step() == 3
        ckpt.close()
    finally:  # orbax may be removing it in the background (cleanup_tmp_directories)
        shutil.rmtree(tmp, ignore_errors=True)


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A disk full during a save: CheckpointError naming the step that is
    intact, and that step still restores."""
    config = tiny_config()
    mesh = _mesh()
    opt = optim.make_optimizer(config.optimizer, 10)
    train_state, _ = state.create_sharded_state(model_config(config), opt, mesh, SEQ, PRED, seed=0)
    ckpt = resume.Checkpointer(tmp_path / "checkpoints", keep=3)
    ckpt.save(1, train_state, {})
    ckpt.wait()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"step 2 .*No space left.*step 1 is intact"):
        ckpt.save(2, train_state, {})
    monkeypatch.undo()
    assert ckpt.latest_step() == 1
    restored, _ = ckpt.restore(1, _abstract(mesh))
    assert int(restored.step) == 0
    ckpt.close()
