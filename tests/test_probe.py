"""The downstream probe in pre-training: `pretrain` fine-tunes a copy of the
weights on a tiny SST-2-like folder every k steps, logs the dev metric at
exactly those steps, and leaves the training trajectory bitwise unchanged;
bad probe settings stop the run at start-up."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from train_utils import CLI_TINY, tiny_config  # noqa: E402

from bert_jax.errors import ConfigError  # noqa: E402
from bert_jax.finetune import probe  # noqa: E402
from bert_jax.train import pretraining  # noqa: E402

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "film",
    "is",
    "good",
    "bad",
    "great",
    "dull",
    "very",
]
POSITIVE = ["the film is good", "a great film", "very good", "the film is great"]
NEGATIVE = ["the film is bad", "a dull film", "very bad", "the film is dull"]
TOTAL, EVERY = 3, 2  # one probe (each compiles a fine-tuning step): at step 2


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    """(GLUE folder with SST-2/{train,dev}.tsv, vocab.txt): 8 train rows, 4 dev rows."""
    root = tmp_path_factory.mktemp("probe_data")
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    sst = root / "glue" / "SST-2"
    sst.mkdir(parents=True)
    rows = [f"{t}\t1" for t in POSITIVE] + [f"{t}\t0" for t in NEGATIVE]
    (sst / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (sst / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[::2]) + "\n")
    return root / "glue", vocab


def _config(glue_dir, **overrides):
    data, vocab = glue_dir
    probe_settings = {
        "probe.every_steps": EVERY,
        "probe.data_dir": str(data),
        "probe.vocab_file": str(vocab),
        "probe.train_examples": 8,
        "probe.steps": 2,
        "probe.batch_size": 8,
        "probe.eval_batch_size": 8,
        "probe.max_seq_length": 16,
    }
    return tiny_config(total_steps=TOTAL, checkpoint_every_steps=0, **{**probe_settings, **overrides})


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def runs(glue_dir, tmp_path_factory):
    """The same tiny pre-training with the probe (plus a spy hook every step) and without."""
    seen = []

    def spy(step, params):
        leaves = jax.tree.leaves(params)
        seen.append((step, all(isinstance(leaf, np.ndarray) for leaf in leaves)))
        return {"leaves": len(leaves)}

    with_probe = str(tmp_path_factory.mktemp("with_probe"))
    config = _config(glue_dir)
    hooks = [probe.make_probe_hook(config, with_probe), pretraining.StepHook("spy", 1, spy)]
    final = pretraining.train(config, with_probe, step_hooks=hooks)
    without = str(tmp_path_factory.mktemp("without_probe"))
    pretraining.train(_config(glue_dir, **{"probe.every_steps": 0}), without)
    return {"with": _records(with_probe), "without": _records(without), "final": final, "seen": seen}


def test_probe_metric_is_logged_at_exactly_every_k_steps(runs):
    records = [r for r in runs["with"] if r.get("split") == "probe"]
    assert [r["step"] for r in records] == [2]
    for r in records:
        assert r["task"] == "sst2" and r["steps"] == 2 and r["train_examples"] == 8
        assert r["accuracy"] in {i / 4 for i in range(5)}  # 4 dev rows


def test_probe_leaves_the_training_losses_bitwise_unchanged(runs):
    def losses(records):
        return [(r["step"], r["loss"]) for r in records if "split" not in r]

    assert [s for s, _ in losses(runs["with"])] == [1, 2, 3]
    assert losses(runs["with"]) == losses(runs["without"])


def test_hooks_get_a_host_numpy_copy_every_n_steps(runs):
    assert runs["seen"] == [(1, True), (2, True), (3, True)]
    assert [r["step"] for r in runs["with"] if r.get("split") == "spy"] == [1, 2, 3]


def test_final_metrics_carry_the_hooks_of_the_last_step(runs):
    assert runs["final"]["spy/leaves"] > 0 and "probe/accuracy" not in runs["final"]


def test_missing_probe_data_dir_is_a_config_error(glue_dir, tmp_path):
    config = _config(glue_dir, **{"probe.data_dir": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match=r"probe.data_dir=.*nowhere: .*SST-2/train.tsv does not exist"):
        probe.make_probe_hook(config, str(tmp_path))


def test_empty_probe_data_dir_is_a_config_error(glue_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"probe.data_dir is empty"):
        probe.make_probe_hook(_config(glue_dir, **{"probe.data_dir": ""}), str(tmp_path))


def test_unknown_probe_task_is_a_config_error(glue_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"probe.task='sst3' is not a GLUE task; known: cola, sst2"):
        probe.make_probe_hook(_config(glue_dir, **{"probe.task": "sst3"}), str(tmp_path))


def test_non_glue_probe_task_is_a_config_error(glue_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"probe.task='squad'; the probe runs GLUE tasks"):
        probe.make_probe_hook(_config(glue_dir, **{"probe.task": "squad"}), str(tmp_path))


def test_probe_vocab_larger_than_the_model_is_a_config_error(glue_dir, tmp_path):
    big = tmp_path / "big_vocab.txt"
    big.write_text("\n".join(VOCAB + [f"w{i}" for i in range(200)]) + "\n")
    with pytest.raises(ConfigError, match=r"big_vocab.txt has 213 tokens but model.vocab_size is 128"):
        probe.make_probe_hook(_config(glue_dir, **{"probe.vocab_file": str(big)}), str(tmp_path))


def test_missing_probe_vocab_is_a_config_error(glue_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"probe: cannot read the vocab .*absent.txt"):
        probe.make_probe_hook(
            _config(glue_dir, **{"probe.vocab_file": str(tmp_path / "absent.txt")}), str(tmp_path)
        )


def test_probe_without_any_vocab_is_a_config_error(glue_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"the probe needs a WordPiece vocab; set probe.vocab_file"):
        probe.make_probe_hook(_config(glue_dir, **{"probe.vocab_file": ""}), str(tmp_path))


def test_pretrain_command_refuses_a_bad_probe_before_training(repo_root, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "bert_jax.cli",
        "pretrain",
        "--config=configs/demo.py",
        *CLI_TINY,
        "--config.total_steps=2",
        "--config.probe.every_steps=1",
        f"--config.probe.data_dir={tmp_path / 'nowhere'}",
        f"--workdir={tmp_path / 'work'}",
    ]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: probe.data_dir=" in proc.stderr and "SST-2/train.tsv does not exist" in proc.stderr
    assert not (tmp_path / "work" / "metrics.jsonl").exists()
