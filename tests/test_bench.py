"""bert-jax bench: the JSON record, the synthetic batch, the reference step."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_jax import bench
from bert_jax.config import StepShape, default_max_predictions, pretrain_config, resolve_config
from bert_jax.errors import ConfigError, UserError

# Smaller than bert_tiny (1 layer, H=32, V=512): fast to compile.
SMALL_MODEL = {
    "num_layers": 1,
    "hidden_size": 32,
    "num_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 512,
    "max_position_embeddings": 64,
}
SMALL = [f"--config.model.{k}={v}" for k, v in SMALL_MODEL.items()]

NUMBER_FIELDS = [
    "step_ms",
    "step_ms_min",
    "step_ms_max",
    "examples_per_s",
    "tokens_per_s",
    "model_tflops_per_s",
    "mfu",
    "model_flops_per_step",
    "peak_flops",
    "compile_s",
]


def _small_config():
    config = pretrain_config("tiny")
    config.model.update(SMALL_MODEL)
    return config


@pytest.fixture(scope="session")
def cli_record(repo_root) -> dict:
    """`bert-jax bench` on bert_tiny, 2 steps: the parsed JSON line."""
    cmd = [sys.executable, "-m", "bert_jax.cli", "bench", "--config=configs/bert_tiny.py"]
    cmd += ["--batch_size=8", "--seq_len=16", "--steps=2", *SMALL]
    proc = subprocess.run(
        cmd, cwd=repo_root, capture_output=True, text=True, env=dict(os.environ), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_cli_prints_one_json_line_with_every_field(cli_record):
    r = cli_record
    for key in NUMBER_FIELDS:
        assert isinstance(r[key], float), key
        assert r[key] > 0, key
    assert isinstance(r["peak_device_memory_bytes"], int) and r["peak_device_memory_bytes"] > 0
    for key in (
        "device",
        "platform",
        "jax_version",
        "flax_version",
        "peak_flops_source",
        "memory_source",
        "allocator",
    ):
        assert isinstance(r[key], str) and r[key], key
    assert r["config"] == "bert_tiny"
    assert r["dtype"] == "float32"
    assert (r["batch_size"], r["seq_len"], r["max_predictions"], r["steps"]) == (8, 16, 2, 2)
    assert "reference" not in r


def test_cli_throughputs_follow_the_median(cli_record):
    r = cli_record
    assert r["step_ms_min"] <= r["step_ms"] <= r["step_ms_max"]
    assert r["examples_per_s"] == pytest.approx(8 / (r["step_ms"] / 1e3))
    assert r["tokens_per_s"] == pytest.approx(8 * 16 / (r["step_ms"] / 1e3))
    assert r["model_tflops_per_s"] == pytest.approx(r["model_flops_per_step"] / (r["step_ms"] / 1e3) / 1e12)
    assert r["mfu"] == pytest.approx(r["model_tflops_per_s"] * 1e12 / r["peak_flops"])


def test_cli_bad_flag_exits_2_with_one_line(repo_root):
    cmd = [sys.executable, "-m", "bert_jax.cli", "bench", "--config=configs/bert_tiny.py", "--seq_len=1024"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "--seq_len=1024 exceeds model.max_position_embeddings=512" in proc.stderr
    assert proc.stdout == ""


def test_default_max_predictions_is_berts():
    assert default_max_predictions(128) == 20
    assert default_max_predictions(512) == 80
    assert default_max_predictions(64) == 10  # round(0.15 * 64) = round(9.6)


def test_default_max_predictions_follows_the_configs_masking_rate():
    # ModernBERT masks 30%: room for 30% of 1,024 tokens, as its recipe's phases have.
    assert default_max_predictions(1024, 0.3) == 308
    config = pretrain_config("tiny")
    config.data.masked_lm_prob = 0.3
    assert resolve_config(config, 8, 128)[1] == StepShape(8, 128, 39)


def test_resolve_config_applies_sizes():
    config, shape = resolve_config(pretrain_config("tiny"), 4, 64, 0, "bfloat16")
    assert shape == StepShape(4, 64, 10)
    assert (config.batch_size, config.data.max_seq_length, config.data.max_predictions_per_seq) == (4, 64, 10)
    assert config.model.dtype == "bfloat16"


def test_resolve_config_rejects_too_many_predictions():
    with pytest.raises(ConfigError, match=r"--max_predictions=16 must be in \[1, seq_len=16\)"):
        resolve_config(pretrain_config("tiny"), 4, 16, 16)


def test_run_bench_rejects_zero_steps():
    with pytest.raises(ConfigError, match="--steps=0"):
        bench.run_bench(pretrain_config("tiny"), batch_size=8, seq_len=16, steps=0)


def test_synthetic_batch_has_pretraining_shapes():
    b = bench.synthetic_batch(StepShape(3, 16, 4), vocab_size=2000, seed=0)
    assert {k: (v.shape, v.dtype) for k, v in b.items()} == {
        "input_ids": ((3, 16), np.int32),
        "input_mask": ((3, 16), np.int32),
        "segment_ids": ((3, 16), np.int32),
        "masked_lm_positions": ((3, 4), np.int32),
        "masked_lm_ids": ((3, 4), np.int32),
        "masked_lm_weights": ((3, 4), np.float32),
        "next_sentence_labels": ((3,), np.int32),
    }
    pos = b["masked_lm_positions"]
    assert (pos >= 1).all() and (pos < 16).all()  # never [CLS]
    assert all(len(set(row)) == 4 for row in pos.tolist())  # distinct
    assert (b["input_ids"] >= 1000).all() and (b["input_ids"] < 2000).all()  # no special tokens
    assert b["segment_ids"][:, :8].sum() == 0 and (b["segment_ids"][:, 8:] == 1).all()


def test_reference_labels_put_ids_at_masked_positions():
    batch = {
        "input_ids": np.zeros((1, 5), np.int32),
        "masked_lm_positions": np.array([[1, 3]], np.int32),
        "masked_lm_ids": np.array([[7, 9]], np.int32),
    }
    assert bench.reference_labels(batch).tolist() == [[-100, 7, -100, 9, -100]]


def test_compare_without_transformers_is_a_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(UserError, match="--compare needs Hugging Face transformers"):
        bench._import_transformers()


def test_compare_times_the_reference_interleaved():
    pytest.importorskip("transformers", reason="--compare needs transformers (the test extra)")
    r = bench.run_bench(
        _small_config(), batch_size=8, seq_len=16, steps=2, compare=True, rounds=2, warmup=0, config_name="t"
    )
    ref = r["reference"]
    assert ref["impl"].startswith("transformers ") and "FlaxBertForPreTraining" in ref["impl"]
    assert r["steps"] == 2 and r["rounds"] == 2
    for key in ("step_ms", "examples_per_s", "tokens_per_s", "model_tflops_per_s", "compile_s"):
        assert isinstance(ref[key], float) and ref[key] > 0, key
    assert r["ratio_to_reference"] == pytest.approx(r["examples_per_s"] / ref["examples_per_s"])
