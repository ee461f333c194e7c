"""tests/tools/ttt_plot.py reads the time-to-target curve files (the common
format of the three pipelines' drivers) into one markdown table."""

import importlib.util
import json

import pytest


@pytest.fixture(scope="module")
def ttt_plot(repo_root):
    spec = importlib.util.spec_from_file_location("ttt_plot", repo_root / "tests" / "tools" / "ttt_plot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _curve(path, pipeline, prep, points, reached):
    """A curve file: header, (train_s, step, accuracy) points, last line."""
    header = {
        "pipeline": pipeline,
        "versions": {},
        "command": "x",
        "seq_len": 128,
        "batch_size": 64,
        "threads": 2,
        "model": {"layers": 2, "hidden": 128, "heads": 2, "intermediate": 512, "vocab_size": 8192},
    }
    lines = [header] + [
        {"wall_s": prep + t, "train_s": t, "step": s, "mlm_accuracy": a} for t, s, a in points
    ]
    lines.append({"data_prep_s": prep, "target": 0.3, "reached": reached, "time_to_target_s": None})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


def test_table_times_each_pipeline_to_the_first_evaluation_at_the_target(ttt_plot, tmp_path):
    ours = _curve(
        tmp_path / "a.jsonl", "bert-jax", 100, [(200, 100, 0.2), (400, 200, 0.31), (600, 300, 0.35)], True
    )
    peer = _curve(tmp_path / "b.jsonl", "hf-flax", 50, [(500, 100, 0.25), (1450, 200, 0.30)], True)
    slow = _curve(tmp_path / "c.jsonl", "keras-hub", 80, [(900, 100, 0.1), (1800, 200, 0.22)], False)
    table = ttt_plot.table([ttt_plot.read_curve(p) for p in (ours, peer, slow)], 0.3).splitlines()
    assert table[0] == "Target held-out MLM accuracy 0.3"
    assert table[4:] == [
        "| bert-jax | 100 | 400 | 500 | 1.00 |",
        "| hf-flax | 50 | 1450 | 1500 | 3.00 |",
        "| keras-hub | 80 | not reached (best 0.220 at 1800 s) | - | - |",
    ]
