"""`bert-jax finetune` end to end on a tiny SST-2-like folder with a tiny
checkpoint made here: results.json, the best checkpoint with its head,
predict mode, several seeds, the pre-training probe, bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from train_utils import save_random_checkpoint, tiny_finetune_config  # noqa: E402

from bert_jax import checkpoints  # noqa: E402
from bert_jax.errors import DataError  # noqa: E402
from bert_jax.finetune import config as ft_config  # noqa: E402
from bert_jax.finetune import probe, trainer  # noqa: E402

WORDS = ["the", "film", "is", "good", "bad", "great", "awful", "fun", "dull", "very", "not", "a", "."]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
POSITIVE = ["the film is good", "a great film", "very fun", "good fun .", "the film is great", "great"]
NEGATIVE = ["the film is bad", "an awful film", "very dull", "not good .", "the film is awful", "dull"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint dir, GLUE-layout data dir) for a random 2-layer H32 BERT."""
    root = tmp_path_factory.mktemp("finetune")
    save_random_checkpoint(root, VOCAB)
    sst = root / "glue" / "SST-2"
    sst.mkdir(parents=True)
    rows = [f"{t} \t1" for t in POSITIVE] + [f"{t} \t0" for t in NEGATIVE]
    (sst / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (sst / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[::2]) + "\n")
    (sst / "test.tsv").write_text("index\tsentence\n0\tvery good film\n1\ta dull film\n2\tawful\n")
    return root / "ckpt", root / "glue"


def _config(tiny, **overrides):
    ckpt, data = tiny
    return tiny_finetune_config(ft_config.finetune_config("sst2"), ckpt, data, **overrides)


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """The command run as a user would, in a subprocess."""
    ckpt, data = tiny
    workdir = tmp_path_factory.mktemp("work") / "sst2"
    cmd = [
        sys.executable,
        "-m",
        "bert_jax.cli",
        "finetune",
        "--config=configs/finetune/glue.py",
        "--config.task=sst2",
        f"--config.data_dir={data}",
        f"--config.init_checkpoint={ckpt}",
        "--config.max_seq_length=16",
        "--config.batch_size=8",
        "--config.eval_batch_size=8",
        "--config.total_steps=3",
        "--config.eval_every_steps=2",
        f"--workdir={workdir}",
    ]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_results_json_has_the_final_dev_metrics(trained):
    results = json.loads((trained / "results.json").read_text())
    assert results["task"] == "sst2"
    assert set(results["dev"]) == {"accuracy"}
    assert results["dev"]["accuracy"] in {i / 6 for i in range(7)}  # 6 dev rows
    assert results["best_step"] in (2, 3) and results["total_steps"] == 3 and results["seed"] == 0


def test_best_checkpoint_keeps_the_head(trained):
    head = json.loads((trained / "best" / "head.json").read_text())
    assert head == {"task": "sst2", "head": "classification", "labels": ["0", "1"]}
    cfg, params, meta = checkpoints.load_model(trained / "best")
    assert cfg.num_labels == 2 and params["classifier"]["kernel"].shape == (32, 2)
    assert meta["vocab_file"].endswith("vocab.txt") and meta["lower_case"] is True


def test_predict_mode_writes_one_label_per_test_row(tiny, trained):
    out = trainer.run(
        _config(tiny, mode="predict", init_checkpoint="", predict_file=str(tiny[1] / "SST-2" / "test.tsv")),
        trained,
    )
    lines = out.read_text().splitlines()
    assert out == trained / "predictions.tsv"
    assert lines[0] == "index\tprediction" and [line.split("\t")[0] for line in lines[1:]] == ["0", "1", "2"]
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}


def test_several_seeds_report_mean_and_std(tiny, tmp_path):
    results = trainer.run(_config(tiny, seeds=(1, 2), total_steps=1, keep_best=False), tmp_path)
    accs = [r["dev"]["accuracy"] for r in results["runs"]]
    assert results["seeds"] == [1, 2]
    assert results["dev"]["accuracy"] == pytest.approx(np.mean(accs))
    assert results["dev_std"]["accuracy"] == pytest.approx(np.std(accs))
    assert json.loads((tmp_path / "seed_2" / "results.json").read_text())["seed"] == 2


def test_probe_returns_the_dev_metric(tiny):
    cfg, params, _ = checkpoints.load_model(tiny[0])
    probe_cfg = ft_config.finetune_config().copy_and_resolve_references()
    probe_cfg = type(probe_cfg)(
        dict(
            task="sst2",
            data_dir=str(tiny[1]),
            train_examples=8,
            steps=2,
            batch_size=8,
            eval_batch_size=8,
            max_seq_length=16,
        )
    )
    out = probe.run_probe(cfg, params, probe_cfg, str(tiny[0] / "vocab.txt"), True)
    assert out["task"] == "sst2" and out["steps"] == 2 and out["train_examples"] == 8
    assert 0.0 <= out["accuracy"] <= 1.0


def test_dev_label_unknown_to_train_stops_before_training(tiny, tmp_path):
    data = tmp_path / "glue" / "SST-2"
    data.mkdir(parents=True)
    (data / "train.tsv").write_text("sentence\tlabel\nthe film is good\t1\n")
    (data / "dev.tsv").write_text("sentence\tlabel\nthe film is bad\t0\n")
    with pytest.raises(DataError, match=r"dev.tsv:2 .* label '0' never occurs in the training file"):
        trainer.run(_config(tiny, data_dir=str(tmp_path / "glue")), tmp_path / "work")
    assert not (tmp_path / "work" / "results.json").exists()


def test_cli_reports_bad_input_in_one_line(tiny, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "bert_jax.cli",
        "finetune",
        "--config=configs/finetune/glue.py",
        "--config.task=nosuchtask",
        f"--workdir={tmp_path}",
    ]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "bert-jax finetune: error: config.task='nosuchtask' is not a GLUE task" in proc.stderr
