"""config.target_mlm_accuracy: a run stops at the first held-out evaluation
that reaches the target and writes time_to_target.json; a target never
reached runs to the end and says so (exit 0); each bad setting is one
ConfigError line (exit 2)."""

import json
import os

import numpy as np
import pytest
from cli_cases import run_cases
from train_utils import CLI_TINY, SignalAt, tiny_config

from bert_jax.errors import ConfigError
from bert_jax.train import inputs, pretraining

# Every token 9: after a few steps at a high learning rate the model predicts
# 9 at every masked position, so the held-out accuracy reaches 1.0 early.
CONSTANT_TOKEN = 9


class ConstantBatches:
    """Pre-training batches whose every token (and so every MLM label) is CONSTANT_TOKEN."""

    def __init__(self, spec):
        self.spec = spec

    def __next__(self):
        rows, n, p = self.spec.per_process_batch, self.spec.seq_len, self.spec.max_predictions
        return {
            "input_ids": np.full((rows, n), CONSTANT_TOKEN, np.int32),
            "input_mask": np.ones((rows, n), np.int32),
            "segment_ids": np.zeros((rows, n), np.int32),
            "masked_lm_positions": np.tile(np.arange(1, p + 1, dtype=np.int32), (rows, 1)),
            "masked_lm_ids": np.full((rows, p), CONSTANT_TOKEN, np.int32),
            "masked_lm_weights": np.ones((rows, p), np.float32),
            "next_sentence_labels": np.zeros(rows, np.int32),
        }

    def state(self):
        return {}


def constant_factory(spec, split, files, state):
    return ConstantBatches(spec)


def test_reaching_the_target_stops_saves_and_writes_the_json(tmp_path, capsys):
    config = tiny_config(
        total_steps=40, eval_every_steps=2, checkpoint_every_steps=0, target_mlm_accuracy=0.9
    )
    config.optimizer.learning_rate = 1e-2
    pretraining.train(config, str(tmp_path), source_factory=constant_factory)

    result = json.loads((tmp_path / "time_to_target.json").read_text())
    step = result["step"]
    assert result["reached"] is True and result["target"] == 0.9
    assert 2 <= step < 40 and step % 2 == 0
    assert result["best_step"] == step and result["best_mlm_accuracy"] >= 0.9
    assert result["train_seconds"] == result["best_train_seconds"] > 0
    assert os.listdir(tmp_path / "checkpoints") == [str(step)]
    evals = [r for r in _records(tmp_path) if r.get("split") == "eval"]
    assert [r["step"] for r in evals] == list(range(2, step + 1, 2))  # no evaluation after the target
    assert all(r["train_seconds"] > 0 for r in evals)
    assert all(r["mlm_accuracy"] < 0.9 for r in evals[:-1])
    line = f"reached MLM accuracy {result['best_mlm_accuracy']:.3f} >= target 0.9 at step {step} after "
    assert line in capsys.readouterr().out


def test_no_target_writes_no_json_but_times_each_evaluation(tmp_path):
    pretraining.train(tiny_config(total_steps=2, eval_every_steps=1, checkpoint_every_steps=0), str(tmp_path))
    assert not (tmp_path / "time_to_target.json").exists()
    evals = [r for r in _records(tmp_path) if r.get("split") == "eval"]
    assert [r["step"] for r in evals] == [1, 2]
    assert 0 < evals[0]["train_seconds"] < evals[1]["train_seconds"]


def _records(workdir) -> list[dict]:
    """Every line of WORKDIR/metrics.jsonl, in order."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------
# A target never reached (the command), and each bad setting


def test_unreachable_target_runs_to_the_end_and_says_so(repo_root, tmp_path):
    """A real `bert-jax pretrain`: exit 0, the best accuracy and its step on one line, the json says not reached."""
    args = [
        f"--config={repo_root / 'configs/bert_tiny.py'}",
        *CLI_TINY,
        f"--workdir={tmp_path}",
        "--config.checkpoint_every_steps=0",
        "--config.total_steps=4",
        "--config.eval_every_steps=2",
        "--config.target_mlm_accuracy=0.99",
    ]
    result = run_cases("pretrain", {"unreachable": (args, "")})["unreachable"]
    assert result["code"] == 0, result
    assert "target 0.99 not reached: best " in result["out"]
    written = json.loads((tmp_path / "time_to_target.json").read_text())
    assert written["reached"] is False and written["step"] is None and written["train_seconds"] is None
    assert written["best_step"] in (2, 4) and written["best_mlm_accuracy"] < 0.99
    assert os.listdir(tmp_path / "checkpoints") == ["4"]


def _refused(tmp_path, **overrides) -> str:
    """The ConfigError message of a start with these config overrides; the workdir is left as it was."""
    with pytest.raises(ConfigError) as error:
        pretraining.train(tiny_config(**overrides), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    return str(error.value)


@pytest.mark.parametrize("target", [1.0, 1.5, -0.1, float("nan")])
def test_target_outside_zero_one_is_a_config_error(tmp_path, target):
    message = _refused(tmp_path, target_mlm_accuracy=target, eval_every_steps=2)
    assert message == (
        f"target_mlm_accuracy={target:g}; use a held-out MLM accuracy in (0, 1), or 0 for no target"
    )


def test_target_without_periodic_evaluation_is_a_config_error(tmp_path):
    message = _refused(tmp_path, target_mlm_accuracy=0.3, eval_every_steps=0)
    assert message == (
        "target_mlm_accuracy=0.3 is checked at each held-out evaluation but eval_every_steps=0 and "
        "eval_steps=2; set both positive"
    )


def test_target_without_eval_batches_is_a_config_error(tmp_path):
    message = _refused(tmp_path, target_mlm_accuracy=0.3, eval_every_steps=2, eval_steps=0)
    assert "but eval_every_steps=2 and eval_steps=0; set both positive" in message


def test_target_without_eval_data_is_a_config_error(tmp_path):
    message = _refused(
        tmp_path,
        target_mlm_accuracy=0.3,
        eval_every_steps=2,
        **{"data.synthetic": False, "data.train_files": str(tmp_path / "none")},
    )
    assert message == (
        "target_mlm_accuracy=0.3 needs held-out data but data.eval_files, data.eval_corpus and data.corpus are "
        "all empty; set data.eval_files (or data.eval_corpus with data.corpus)"
    )


# ---------------------------------------------------------------------------
# Resume: one clock and one best across a restart


def test_a_resumed_clock_goes_on_from_the_saved_seconds_and_best(monkeypatch):
    from bert_jax.train import target

    now = [1000.0]
    monkeypatch.setattr(target.time, "monotonic", lambda: now[0])
    first = target.TimeToTarget(0.9, started=now[0])
    now[0] += 30.0
    assert not first.observe(2, 0.4, first.seconds())
    saved = json.loads(json.dumps(first.state()))  # as the checkpoint's JSON item holds it
    now[0] += 500.0  # stopped, then restarted: not training time
    second = target.TimeToTarget(0.9, started=now[0])
    second.resume(saved)
    assert second.seconds() == 30.0
    now[0] += 10.0
    assert not second.observe(4, 0.3, second.seconds())
    assert (second.best_step, second.best_accuracy, second.best_seconds) == (2, 0.4, 30.0)
    now[0] += 5.0
    assert second.observe(6, 0.95, second.seconds())
    assert second.record()["step"] == 6 and second.record()["train_seconds"] == 45.0


def test_a_run_resumed_after_sigterm_counts_from_the_checkpoint_s_clock(tmp_path):
    """The checkpoint keeps the clock; the resumed run's evaluations go on from it
    (here set to 1000 s in the saved item), and the best is the best of both legs."""
    config = tiny_config(total_steps=4, eval_every_steps=1, checkpoint_every_steps=0, target_mlm_accuracy=0.99)
    synthetic = inputs.synthetic_factory(config.model.vocab_size, int(config.seed))

    def stopping(spec, split, files, state):
        source = synthetic(spec, split, files, state)
        return SignalAt(source, 1) if split == "train" else source

    pretraining.train(config, str(tmp_path), source_factory=stopping)
    assert os.listdir(tmp_path / "checkpoints") == ["2"] and not (tmp_path / "time_to_target.json").exists()
    (saved,) = [p for p in (tmp_path / "checkpoints" / "2").rglob("*") if p.is_file() and "time_to_target" in
                p.read_text(errors="ignore")]
    item = json.loads(saved.read_text())
    assert item["time_to_target"]["best_step"] in (1, 2)
    item["time_to_target"]["train_seconds"] = 1000.0
    saved.write_text(json.dumps(item))

    pretraining.train(config, str(tmp_path))
    evals = {r["step"]: r for r in _records(tmp_path) if r.get("split") == "eval"}
    assert sorted(evals) == [1, 2, 3, 4]
    assert evals[2]["train_seconds"] < 1000.0 < evals[3]["train_seconds"] < evals[4]["train_seconds"]
    result = json.loads((tmp_path / "time_to_target.json").read_text())
    best = max(evals.values(), key=lambda r: r["mlm_accuracy"])
    assert result["best_mlm_accuracy"] == pytest.approx(best["mlm_accuracy"])
    assert result["best_train_seconds"] == pytest.approx(best["train_seconds"], abs=1e-3)
