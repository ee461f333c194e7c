"""Distillation: student initialisation, the distill job end to end on a toy
task, and bad input (its losses: tests/test_losses.py)."""

import json

import numpy as np
import pytest
import toy_tasks

from bert_jax.compress import distill
from bert_jax.compress.config import distill_config
from bert_jax.errors import UserError


def test_layer_choices():
    assert distill.alternate_layers(6, 3) == [0, 2, 4]
    assert distill.alternate_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert distill.uniform_layer_map(3, 6) == [2, 4, 6]


def test_student_copies_alternate_teacher_layers():
    cfg = toy_tasks.tiny_config(50, num_layers=4)
    params = toy_tasks.init_params(cfg)
    student_cfg, student = distill.student_from_params(cfg, params, 2, 0, "teacher")
    assert student_cfg.num_layers == 2
    np.testing.assert_array_equal(student["bert"]["encoder"]["layer_1"]["intermediate"]["kernel"],
                                  params["bert"]["encoder"]["layer_2"]["intermediate"]["kernel"])
    assert student["classifier"] is params["classifier"]


def test_student_wider_than_its_source_is_refused():
    cfg = toy_tasks.tiny_config(50, hidden_size=32)
    with pytest.raises(UserError, match="wider than its initialisation source"):
        distill.student_from_params(cfg, toy_tasks.init_params(cfg), 1, 64, "teacher")


# --------------------------------------------------------------------------
# The job, on a toy SST-2


@pytest.fixture(scope="module")
def toy_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    vocab, data, _, teacher = toy_tasks.write_teacher(root, n_train=32, n_dev=16)
    return root, vocab, data, teacher


def _config(teacher, data, **overrides):
    c = distill_config("sst2")
    c.teacher, c.data_dir, c.max_seq_length = str(teacher), str(data), 16
    c.student_layers, c.total_steps, c.batch_size, c.eval_batch_size, c.throughput_runs = 1, 3, 8, 8, 2
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def test_distill_job_writes_teacher_and_student_results(toy_task, tmp_path):
    root, _, data, teacher = toy_task
    config = _config(teacher, data, hidden_weight=1.0, attention_weight=1.0)
    results = distill.run(config, str(tmp_path / "student"))
    on_disk = json.loads((tmp_path / "student" / "results.json").read_text())
    assert on_disk == results
    for side in ("teacher", "student"):
        assert 0.0 <= on_disk[side]["accuracy"] <= 1.0 and on_disk[side]["examples_per_s"] > 0
    assert (on_disk["teacher"]["num_layers"], on_disk["student"]["num_layers"]) == (2, 1)
    assert on_disk["student"]["init"] == "layers [0] of teacher"
    head = json.loads((tmp_path / "student" / "best" / "head.json").read_text())
    assert head["task"] == "sst2"


def test_distill_from_a_config_file_with_another_width_learns_a_projection(toy_task, tmp_path, repo_root):
    _, vocab, data, teacher = toy_task
    student_cfg = tmp_path / "student_cfg.py"
    student_cfg.write_text(
        "from bert_jax.config import pretrain_config\n"
        "def get_config():\n"
        "    c = pretrain_config('tiny')\n"
        f"    c.model.vocab_size = {len(vocab.read_text().split())}\n"
        "    c.model.hidden_size, c.model.num_heads, c.model.intermediate_size = 16, 4, 32\n"
        "    return c\n"
    )
    config = _config(teacher, data, student_init=str(student_cfg), hidden_weight=1.0, total_steps=2)
    results = distill.run(config, str(tmp_path / "out"))
    assert results["student"]["init"] == f"fresh {student_cfg}"


def test_teacher_for_another_task_is_refused(toy_task, tmp_path):
    root, vocab, data, _ = toy_task
    cfg = toy_tasks.tiny_config(len(vocab.read_text().split()))
    other = toy_tasks.write_finetuned_workdir(tmp_path / "cola", cfg, toy_tasks.init_params(cfg), vocab, data, task="cola")
    with pytest.raises(UserError, match="fine-tuned for 'cola', not config.task='sst2'"):
        distill.run(_config(other, data), str(tmp_path / "out"))


def test_teacher_with_a_vocab_of_another_size_is_refused(toy_task, tmp_path):
    _, vocab, data, teacher = toy_task
    bigger = tmp_path / "vocab.txt"
    bigger.write_text(vocab.read_text() + "extra\n")
    with pytest.raises(UserError, match="vocab"):
        distill.run(_config(teacher, data, vocab_file=str(bigger)), str(tmp_path / "out"))


def test_teacher_without_classifier_is_refused(toy_task, tmp_path):
    from bert_jax import checkpoints

    _, vocab, data, _ = toy_task
    cfg = toy_tasks.tiny_config(len(vocab.read_text().split()))
    checkpoints.save_model(tmp_path / "enc", cfg, {"bert": toy_tasks.init_params(cfg)["bert"]}, vocab_file=str(vocab))
    with pytest.raises(UserError, match="no classification head"):
        distill.run(_config(tmp_path / "enc", data), str(tmp_path / "out"))
