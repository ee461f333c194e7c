"""The pretrain loop and command: exact resume after SIGTERM (a real
`bert-jax pretrain` process), sequence-length phases, NaN handling,
evaluation output, init_checkpoint, and each bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from train_utils import CLI_TINY, SignalAt, tiny_config

from bert_jax.errors import CheckpointError, ConfigError, DataError, UserError
from bert_jax.train import evaluate, inputs, loop, metrics_log, pretraining


def _losses(workdir) -> dict[int, float]:
    return {s: r["loss"] for s, r in metrics_log.read_metrics(str(workdir)).items()}


# ---------------------------------------------------------------------------
# Exact resume


@pytest.mark.slow
def test_sigterm_saves_and_resume_is_bitwise_exact(tmp_path, repo_root):
    """A real `bert-jax pretrain` gets SIGTERM mid-run, saves and exits 0;
    resuming gives the per-step losses of a run that never stopped."""
    stopped = tmp_path / "stopped"
    cmd = [
        sys.executable,
        "-m",
        "bert_jax.cli",
        "pretrain",
        "--config=configs/demo.py",
        f"--workdir={stopped}",
        *CLI_TINY,
        "--config.total_steps=100000",
        "--config.checkpoint_every_steps=0",
    ]
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while len(_losses(stopped)) < 3:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no training step logged in 300 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "stopped by signal" in out
    k = max(_losses(stopped))
    assert sorted(os.listdir(stopped / "checkpoints")) == [str(k)]

    total = k + 2
    pretraining.train(tiny_config(total_steps=total), str(stopped))
    pretraining.train(tiny_config(total_steps=total), str(tmp_path / "straight"))
    resumed, straight = _losses(stopped), _losses(tmp_path / "straight")
    assert sorted(resumed) == list(range(1, total + 1))
    assert [resumed[s] for s in range(1, total + 1)] == [straight[s] for s in range(1, total + 1)]


def test_phases_switch_length_and_resume_in_the_second(tmp_path):
    """BERT's schedule in small: 50% of steps at seq 16, then 32; a run stopped
    in phase 2 resumes there with the same losses."""
    phases = [
        {"fraction": 0.5, "max_seq_length": 16, "max_predictions_per_seq": 4},
        {"fraction": 0.5, "max_seq_length": 32, "max_predictions_per_seq": 6},
    ]
    config = tiny_config(total_steps=4, phases=phases)
    pretraining.train(config, str(tmp_path / "straight"))
    straight = metrics_log.read_metrics(str(tmp_path / "straight"))
    assert [straight[s]["seq_len"] for s in (1, 2, 3, 4)] == [16, 16, 32, 32]

    workdir = str(tmp_path / "stopped")
    # Batch 0 of phase 2's source is step 3: stop after it.
    pretraining.train(config, workdir, source_factory=_stopping_factory_phase(config, phase_batch=0))
    assert max(_losses(workdir)) == 3
    pretraining.train(config, workdir)
    resumed = _losses(workdir)
    assert [resumed[s] for s in (1, 2, 3, 4)] == [straight[s]["loss"] for s in (1, 2, 3, 4)]


def _stopping_factory_phase(config, phase_batch: int):
    base = inputs.synthetic_factory(config.model.vocab_size, int(config.seed))

    def make(spec, split, files, state):
        source = base(spec, split, files, state)
        if split == "train" and spec.seq_len == 32:
            return SignalAt(source, phase_batch)
        return source

    return make


# ---------------------------------------------------------------------------
# NaN handling, evaluation, init_checkpoint


def _exploding(**kw):
    """A learning rate so large the second step's loss is not finite."""
    return tiny_config(**{"optimizer.learning_rate": 1e30, "optimizer.max_grad_norm": 0.0, **kw})


def test_nan_stops_with_the_last_checkpoint_intact(tmp_path):
    with pytest.raises(
        loop.TrainingDiverged, match=r"NaN/Inf by step \d+; the last checkpoint \(1\) is intact"
    ):
        pretraining.train(_exploding(total_steps=4, checkpoint_every_steps=1), str(tmp_path))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]


def test_nan_skip_drops_the_updates_and_finishes(tmp_path):
    final = pretraining.train(_exploding(total_steps=3, on_nan="skip"), str(tmp_path))
    records = metrics_log.read_metrics(str(tmp_path))
    assert records[1]["nonfinite"] == 0.0
    assert records[2]["nonfinite"] == 1.0 and records[3]["nonfinite"] == 1.0
    assert final["nonfinite"] == 1.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step run with an evaluation at the end."""
    workdir = tmp_path_factory.mktemp("trained")
    final = pretraining.train(tiny_config(total_steps=2), str(workdir))
    return workdir, final


def test_workdir_layout(trained):
    workdir, final = trained
    assert {"config.json", "metrics.jsonl", "tb", "checkpoints"} <= set(os.listdir(workdir))
    assert json.loads((workdir / "config.json").read_text())["total_steps"] == 2
    assert os.listdir(workdir / "tb")
    assert "eval_mlm_accuracy" in final


def test_evaluate_reports_the_documented_fields(trained):
    workdir, _ = trained
    config = evaluate.load_workdir_config(str(workdir))
    result = evaluate.evaluate_workdir(config, str(workdir))
    assert {"step", "mlm_loss", "mlm_accuracy", "nsp_accuracy", "perplexity", "batches"} <= set(result)
    assert result["step"] == 2 and result["batches"] == config.eval_steps
    assert result["perplexity"] == pytest.approx(np.exp(result["mlm_loss"]))
    path = evaluate.write_result(str(workdir), result)
    with open(path) as f:
        assert json.load(f)["mlm_loss"] == result["mlm_loss"]


def test_evaluate_on_another_mesh_gives_the_same_numbers(trained):
    workdir, _ = trained
    config = evaluate.load_workdir_config(str(workdir))
    a = evaluate.evaluate_workdir(config, str(workdir))
    config.mesh.update({"data": 2, "fsdp": 2, "tensor": 2})
    b = evaluate.evaluate_workdir(config, str(workdir))
    assert b["mlm_loss"] == pytest.approx(a["mlm_loss"], rel=1e-5)


def test_init_checkpoint_extends_the_position_table(trained, tmp_path):
    workdir, _ = trained
    from bert_jax import checkpoints

    _, old, _ = checkpoints.load_model(str(workdir))
    config = tiny_config(total_steps=1, init_checkpoint=str(workdir), **{"model.max_position_embeddings": 64})
    pretraining.train(config, str(tmp_path))
    _, new, _ = checkpoints.load_model(str(tmp_path), step=1)
    table = new["bert"]["embeddings"]["position_embeddings"]["embedding"]
    assert table.shape == (64, 32)
    # One step of Adam moves each value by about the learning rate (1e-3) at most.
    np.testing.assert_allclose(
        table[:32], old["bert"]["embeddings"]["position_embeddings"]["embedding"], atol=2e-3
    )


def test_init_checkpoint_of_another_hidden_size_is_a_checkpoint_error(trained, tmp_path):
    workdir, _ = trained
    config = tiny_config(
        init_checkpoint=str(workdir), **{"model.hidden_size": 64, "model.intermediate_size": 128}
    )
    with pytest.raises(
        CheckpointError,
        match=r"init_checkpoint=.*LayerNorm/bias has shape \(32,\) but the model needs \(64,\)",
    ):
        pretraining.train(config, str(tmp_path))


# ---------------------------------------------------------------------------
# Bad input, one test each


def test_workdir_holding_another_model_is_a_checkpoint_error(trained):
    workdir, _ = trained
    config = tiny_config(total_steps=4, **{"model.hidden_size": 64, "model.intermediate_size": 128})
    with pytest.raises(CheckpointError, match=r"has shape \(32,\) but the config's model needs \(64,\)"):
        pretraining.train(config, str(workdir))


def test_mesh_not_dividing_the_devices(tmp_path):
    with pytest.raises(ConfigError, match="there are 8"):
        pretraining.train(tiny_config(**{"mesh.data": 3}), str(tmp_path))


def test_batch_not_divisible_by_data_parallel_size(tmp_path):
    with pytest.raises(ConfigError, match=r"batch_size=12 .* 8 data-parallel devices"):
        pretraining.train(tiny_config(batch_size=12), str(tmp_path))


def test_unknown_model_size_key(tmp_path):
    config = tiny_config()
    config.model.hiddden_size = 3
    with pytest.raises(ConfigError, match="hiddden_size"):
        pretraining.train(config, str(tmp_path))


def test_unwritable_workdir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match=r"cannot write to workdir .*a-file/run"):
        pretraining.train(tiny_config(), str(blocker / "run"))


def test_second_run_on_a_live_workdir_is_refused(tmp_path):
    (tmp_path / loop.LOCK_FILE).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    with pytest.raises(UserError, match=rf"in use by another run \(pid {os.getppid()}"):
        pretraining.train(tiny_config(), str(tmp_path))


def test_stale_lock_is_taken_over(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / loop.LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    with loop.workdir_lock(str(tmp_path)):
        assert json.loads((tmp_path / loop.LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / loop.LOCK_FILE).exists()


def _pipeline_source(files, vocab_file=""):
    config = tiny_config(**{"data.synthetic": False})
    factory = inputs.pipeline_factory(config.data, 0, vocab_file)
    spec = inputs.SourceSpec(8, 0, 8, 16, 4)
    return factory(spec, "train", files, None)


def test_empty_data_directory_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path}: directory without metadata.json"):
        _pipeline_source(str(tmp_path))


def test_data_made_with_another_vocab_is_a_data_error(tmp_path):
    from bert_jax.data import input_pipeline

    input_pipeline.write_random_shards(
        str(tmp_path / "data"),
        num_files=1,
        records_per_file=16,
        max_seq_length=16,
        max_predictions_per_seq=4,
        masking="static",
        vocab_size=2000,
    )
    vocab = tmp_path / "vocab.txt"
    vocab.write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(1995)]) + "\n"
    )
    with pytest.raises(DataError, match="vocab.sha256"):
        _pipeline_source(str(tmp_path / "data"), str(vocab))
