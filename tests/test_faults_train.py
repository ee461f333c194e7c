"""Faults of pre-training, evaluation and checkpoint readers (issue 17):
damaged checkpoints, a disk that fills during a save, token ids beyond the
model's vocabulary, lengths beyond its position table, non-finite metrics,
a changed batch size on resume, bad step sizes, a failed start's leftovers
and the first ETA. Each fault: one clear error (or one warning line and a
fallback), never a traceback or a silently wrong result."""

import errno
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types

import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.checkpointers import async_checkpointer
from train_utils import CLI_TINY, PRED, SEQ, tiny_config

from bert_jax import checkpoints, convert, features
from bert_jax.data import input_pipeline
from bert_jax.errors import CheckpointError, ConfigError, UserError
from bert_jax.model import ModelConfig
from bert_jax.train import evaluate, loop, pretraining

# ---------------------------------------------------------------------------
# A workdir with two checkpoints (steps 2 and 4); the tests damage step 4.


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two") / "run"
    pretraining.train(tiny_config(total_steps=4, eval_steps=1), str(workdir))
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
    pretraining.train(tiny_config(total_steps=6, eval_steps=1), str(damaged))
    out, err = capfd.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err
    assert warnings[0].startswith("warning: checkpoint step 4 is damaged (")
    assert "resuming from step 2, the newest intact one" in warnings[0]
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
        CheckpointError, match=r"checkpoint step 4 of .* is damaged \(.*\); step 2 is intact: pass the path .*checkpoints/2 instead"
    ):
        checkpoints.load_model(damaged)


def _error_lines(stderr: str) -> list[str]:
    """stderr less the native libraries' start-up lines (CUDA stubs, oneDNN)."""
    native = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} \S+ +\d+ \S+\.cc:\d+\])")
    return [line for line in stderr.splitlines() if line.strip() and not native.match(line)]


def test_evaluate_command_on_a_damaged_checkpoint_is_one_line(two_checkpoints, tmp_path, repo_root):
    workdir = tmp_path / "run"
    shutil.copytree(two_checkpoints, workdir)
    _garbage_metadata(workdir / "checkpoints" / "4" / "state")
    proc = subprocess.run(
        [sys.executable, "-m", "bert_jax.cli", "evaluate", f"--workdir={workdir}"],
        cwd=repo_root, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bert-jax evaluate: error: checkpoint step 4 is damaged (")
    assert lines[0].endswith("step 2 is intact: pass --step=2")
    assert not list(workdir.glob("eval_*.json"))


# ---------------------------------------------------------------------------
# A disk that fills during a checkpoint save


def test_disk_full_during_a_save_is_one_line(tmp_path, monkeypatch, capfd):
    """The background write of step 4 fails with ENOSPC: one error naming
    the intact step 2; orbax's own error log of it (a traceback) goes to
    WORKDIR/checkpoint-errors.log, not stderr."""
    real = async_checkpointer._background_wait_for_commit_futures
    calls = []

    def full_disk(directory, *args, **kwargs):
        calls.append(directory)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
        return real(directory, *args, **kwargs)

    monkeypatch.setattr(async_checkpointer, "_background_wait_for_commit_futures", full_disk)
    capfd.readouterr()
    with pytest.raises(CheckpointError, match=r"saving checkpoint step 4 .*No space left on device.*step 2 is intact"):
        pretraining.train(tiny_config(total_steps=4, eval_steps=1), str(tmp_path))
    err = capfd.readouterr().err
    assert "Traceback" not in err and "No space" not in err, err
    assert "No space left on device" in (tmp_path / "checkpoint-errors.log").read_text()


# `bert-jax pretrain` with orbax's background write failing with ENOSPC at the second save.
_FULL_DISK_PRETRAIN = """
import errno, os, sys
from orbax.checkpoint._src.checkpointers import async_checkpointer as ac
real, calls = ac._background_wait_for_commit_futures, []
def full_disk(directory, *args, **kwargs):
    real(directory, *args, **kwargs)  # the writes end, then the finalisation meets the full disk
    calls.append(directory)
    if len(calls) > 1:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
ac._background_wait_for_commit_futures = full_disk
from bert_jax.cli import run
run(["bert-jax", *sys.argv[1:]])
"""


def test_pretrain_command_on_a_full_disk_prints_one_line(tmp_path, repo_root):
    workdir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_PRETRAIN, "pretrain", "--config=configs/demo.py", f"--workdir={workdir}",
         *CLI_TINY, "--config.total_steps=4", "--config.checkpoint_every_steps=2"],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in _error_lines(proc.stderr) if not line.startswith("bert-jax pretrain: error:")]
    assert lines == [], proc.stderr[-3000:]  # nothing but the one error line (native start-up lines aside)
    lines = _error_lines(proc.stderr)
    assert lines[0].startswith("bert-jax pretrain: error: saving checkpoint step 4 in ")
    assert "No space left on device" in lines[0] and "step 2 is intact" in lines[0]
    assert "Traceback" in (workdir / "checkpoint-errors.log").read_text()


def test_a_full_disk_leaves_no_write_test_file(tmp_path, monkeypatch):
    """The workdir probe is created, then its write fails: it is removed all the same."""

    def full_disk_open(path, mode="r", *args, **kwargs):
        if "w" in mode:
            pathlib.Path(path).touch()  # the open succeeds, the write fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return open(path, mode, *args, **kwargs)  # noqa: SIM115  (a stand-in for open itself)

    monkeypatch.setattr(loop, "open", full_disk_open, raising=False)
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match=r"cannot write to workdir .* \(No space left on device\)"):
        pretraining.train(tiny_config(), str(tmp_path))
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_save_model_onto_a_full_disk_is_one_line_and_leaves_nothing(two_checkpoints, tmp_path, monkeypatch):
    """What `bert-jax convert --from=...` writes through."""
    cfg, params, _ = checkpoints.load_model(two_checkpoints)

    def full_disk(self, directory, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"cannot write .*/out \(No space left on device\); nothing was written"):
        checkpoints.save_model(tmp_path / "out", cfg, params)
    assert os.listdir(tmp_path) == []


def test_export_onto_a_full_disk_is_one_line_and_leaves_nothing(two_checkpoints, tmp_path, monkeypatch):
    """`bert-jax convert --to=hf`: safetensors reports the full disk with its own error type."""
    import safetensors.numpy

    real = safetensors.numpy.save_file

    def full_disk(state, path, metadata=None):
        real({}, "/nonexistent-dir/x.safetensors")  # raises SafetensorError: "I/O error: ..."

    monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
    with pytest.raises(CheckpointError, match=r"cannot write .*/hf \(.*I/O error.*\); nothing was written"):
        convert.export_checkpoint(two_checkpoints, tmp_path / "hf")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# Token ids beyond the model's vocabulary, lengths beyond its position table


def _shards(directory, vocab_size=2000, seq=SEQ, pred=PRED):
    """Created shards of random ids below `vocab_size` (recorded in metadata.json)."""
    input_pipeline.write_random_shards(
        str(directory), num_files=1, records_per_file=16, max_seq_length=seq,
        max_predictions_per_seq=pred, masking="static", vocab_size=vocab_size,
    )
    return str(directory)


def _eval_config(workdir, eval_files):
    config = evaluate.load_workdir_config(str(workdir))
    config.data.synthetic = False
    config.data.eval_files = eval_files
    return config


def test_evaluate_refuses_shards_of_a_larger_vocab(two_checkpoints, tmp_path):
    shards = _shards(tmp_path / "big")
    with pytest.raises(
        ConfigError, match=r"big/metadata.json: the shards were made with a 2000-token vocab .* model.vocab_size=128"
    ):
        evaluate.evaluate_workdir(_eval_config(two_checkpoints, shards), str(two_checkpoints))


def test_pretrain_refuses_shards_of_a_larger_vocab_before_any_step(tmp_path):
    shards = _shards(tmp_path / "big")
    config = tiny_config(**{"data.synthetic": False, "data.train_files": shards})
    with pytest.raises(ConfigError, match=r"2000-token vocab \(vocab.size\) but model.vocab_size=128"):
        pretraining.train(config, str(tmp_path / "run"))


def test_shards_longer_than_the_position_table_are_refused(tmp_path):
    shards = _shards(tmp_path / "long", vocab_size=2000, seq=64, pred=4)
    config = tiny_config(**{"data.synthetic": False, "data.train_files": shards, "model.vocab_size": 2000})
    with pytest.raises(ConfigError, match=r"settings.max_seq_length=64 exceeds the model's max_position_embeddings=32"):
        pretraining.train(config, str(tmp_path / "run"))


def test_max_seq_length_beyond_the_position_table_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"data.max_seq_length=64 exceeds model.max_position_embeddings=32"):
        pretraining.train(tiny_config(**{"data.max_seq_length": 64}), str(tmp_path / "run"))


def test_extract_features_refuses_a_larger_vocab():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(195)]
    tokenizer = types.SimpleNamespace(vocab_size=len(vocab))
    with pytest.raises(UserError, match=r"the tokenizer big.txt has 200 tokens but the checkpoint's vocab_size is 128"):
        features.check_tokenizer_fits(tokenizer, ModelConfig(vocab_size=128), "big.txt")


def test_non_finite_evaluation_is_an_error_and_keeps_a_good_result(two_checkpoints, tmp_path):
    """Shards whose metadata understates their ids: the metrics come out NaN;
    that is an error and the earlier eval_4.json stays as it was."""
    workdir = tmp_path / "run"
    shutil.copytree(two_checkpoints, workdir)
    good = evaluate.write_result(str(workdir), {"step": 4, "mlm_loss": 5.0})
    before = pathlib.Path(good).read_text()
    shards = _shards(tmp_path / "lying")
    meta = json.loads((tmp_path / "lying" / "metadata.json").read_text())
    meta["vocab"]["size"] = 128
    (tmp_path / "lying" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"gave non-finite metrics \(.*mlm_loss=nan"):
        evaluate.evaluate_workdir(_eval_config(workdir, shards), str(workdir))
    with pytest.raises(UserError, match=r"non-finite metrics \(mlm_loss=nan\); nothing was written"):
        evaluate.write_result(str(workdir), {"step": 4, "mlm_loss": float("nan")})
    assert pathlib.Path(good).read_text() == before
    assert sorted(p for p in os.listdir(workdir) if p.startswith("eval_")) == ["eval_4.json"]


# ---------------------------------------------------------------------------
# Resume with another batch size; step sizes; a failed start; the first ETA


def test_resume_with_another_batch_size_is_refused(two_checkpoints, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(two_checkpoints, workdir)
    with pytest.raises(
        ConfigError, match=r"batch_size=16 but .*checkpoints/4 was saved with batch_size=8; the data position"
    ):
        pretraining.train(tiny_config(total_steps=6, batch_size=16), str(workdir))
    assert json.loads((workdir / "config.json").read_text())["batch_size"] == 8  # the saved config stays


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"data.max_seq_length": 1}, r"data.max_seq_length=1; use at least 4 tokens"),
        ({"batch_size": -8}, r"batch_size=-8; use a positive number"),
        ({"data.max_predictions_per_seq": 20}, r"max_predictions_per_seq=20 with max_seq_length=16; .* use 1 to 14"),
    ],
    ids=["seq1", "negative_batch", "more_masks_than_tokens"],
)
def test_bad_step_sizes_are_one_line_each(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        pretraining.train(tiny_config(**overrides), str(tmp_path / "run"))


def test_a_failed_start_leaves_no_files_in_a_fresh_workdir(tmp_path):
    """The start fails after checkpoints/ and tb/ were made (a missing init_checkpoint)."""
    workdir = tmp_path / "fresh"
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        pretraining.train(tiny_config(init_checkpoint=str(tmp_path / "missing")), str(workdir))
    assert not workdir.exists()


def test_a_failed_start_keeps_what_was_there(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="there are 8"):
        pretraining.train(tiny_config(**{"mesh.data": 3}), str(tmp_path))
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_the_first_eta_leaves_out_compilation(tmp_path, capsys):
    """Step 1 is mostly compilation: no ETA there; the later ones time steps after it."""
    pretraining.train(tiny_config(total_steps=3, checkpoint_every_steps=0, eval_steps=1), str(tmp_path))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step 1/3") and "ETA" not in lines[0]
    assert all("| ETA " in line for line in lines[1:]), lines
