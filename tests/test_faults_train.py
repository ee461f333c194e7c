"""Faults of pre-training, evaluation and checkpoint readers (issue 17):
damaged checkpoints, a disk that fills during a save, token ids beyond the
model's vocabulary, lengths beyond its position table, non-finite metrics,
a changed batch size on resume, bad step sizes, a failed start's leftovers
and the first ETA. Each fault: one clear error (or one warning line and a
fallback), never a traceback or a silently wrong result."""

import errno
import json
import os
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest
from train_utils import tiny_config

from bert_jax import checkpoints
from bert_jax.errors import CheckpointError, ConfigError
from bert_jax.train import evaluate, loop

# ---------------------------------------------------------------------------
# A workdir with two checkpoints (steps 2 and 4); the tests damage step 4.


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two") / "run"
    loop.train(tiny_config(total_steps=4, eval_steps=1), str(workdir))
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
    return workdir


def _delete_array_file(state):
    """The OCDBT data file(s) holding the arrays are gone."""
    for f in (state / "d").iterdir():
        f.unlink()


def _truncate_array_file(state):
    for f in (state / "d").iterdir():
        os.truncate(f, f.stat().st_size // 2)


def _garbage_metadata(state):
    (state / "_METADATA").write_text("garbage{")


DAMAGES = [_delete_array_file, _truncate_array_file, _garbage_metadata]


@pytest.fixture(params=DAMAGES, ids=lambda f: f.__name__.strip("_"))
def damaged(request, two_checkpoints, tmp_path):
    """A copy of the two-checkpoint workdir with step 4 damaged one way."""
    workdir = tmp_path / "run"
    shutil.copytree(two_checkpoints, workdir)
    request.param(workdir / "checkpoints" / "4" / "state")
    return workdir


def test_resume_falls_back_to_the_newest_intact_checkpoint(damaged, capfd):
    capfd.readouterr()
    loop.train(tiny_config(total_steps=6, eval_steps=1), str(damaged))
    out, err = capfd.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert "checkpoints/4" in warnings[0] and "resuming from step 2, the newest intact one" in warnings[0]
    assert "Traceback" not in err
    assert f"resuming from {damaged}/checkpoints/2" in out
    # The damaged step is set aside (kept for inspection), step 4 is trained and saved anew.
    assert sorted(os.listdir(damaged / "checkpoints")) == ["2", "4", "4.damaged", "6"]


def test_evaluate_names_the_damaged_step_and_the_intact_one(damaged, capfd):
    config = evaluate.load_workdir_config(str(damaged))
    with pytest.raises(CheckpointError, match=r"checkpoint step 4 is damaged \(.*\); step 2 is intact: pass --step=2"):
        evaluate.evaluate_workdir(config, str(damaged))
    assert "Traceback" not in capfd.readouterr().err


def test_load_model_names_the_damaged_step_and_the_intact_one(damaged):
    """What convert, extract-features and finetune's init_checkpoint read."""
    with pytest.raises(
        CheckpointError, match=r"checkpoint step 4 of .* is damaged \(.*\); step 2 is intact: pass --step=2"
    ):
        checkpoints.load_model(damaged)


# ---------------------------------------------------------------------------
# A disk that fills during a checkpoint save


def test_disk_full_during_a_save_is_one_line(tmp_path, monkeypatch, capfd):
    """The save of step 4 fails with ENOSPC in orbax's writer: one error
    naming the intact step 2; orbax's own error logs go to the workdir's
    log file, not stderr."""
    real = ocp.StandardCheckpointHandler.async_save
    calls = []

    def full_disk(self, directory, *args, **kwargs):
        calls.append(directory)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
        return real(self, directory, *args, **kwargs)

    monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", full_disk)
    capfd.readouterr()
    with pytest.raises(CheckpointError, match=r"saving checkpoint step 4 .*No space left on device.*step 2 is intact"):
        loop.train(tiny_config(total_steps=4, eval_steps=1), str(tmp_path))
    err = capfd.readouterr().err
    assert "Traceback" not in err and "No space" not in err, err
