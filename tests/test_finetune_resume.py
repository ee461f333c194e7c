"""Fine-tuning and distillation resume exactly: a run stopped by SIGTERM after step k
saves a checkpoint and stops; rerun in the same workdir, it ends with the
results, best checkpoint and per-step losses of a run that never stopped
(bitwise on CPU). The reference is an independent run in its own workdir."""

import os
import signal

import jax
import numpy as np
import pytest
import toy_tasks
from train_utils import save_random_checkpoint, tiny_finetune_config

from bert_jax import checkpoints
from bert_jax.finetune import config as ft_config
from bert_jax.finetune import trainer
from bert_jax.train import metrics_log

TOTAL, STOP_AFTER = 6, 3


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(checkpoint, GLUE folder) of a random 2-layer BERT and the toy SST-2 task."""
    root = tmp_path_factory.mktemp("ft_resume")
    vocab = toy_tasks.write_vocab(root / "toy_vocab.txt").read_text().split()
    ckpt = save_random_checkpoint(root, vocab)
    return ckpt, toy_tasks.write_sst2(root / "glue", n_train=40, n_dev=12)


def _config(toy, **overrides):
    ckpt, glue = toy
    return tiny_finetune_config(ft_config.finetune_config("sst2"), ckpt, glue, total_steps=TOTAL,
                                eval_every_steps=2, checkpoint_every_steps=2, tensorboard=False, **overrides)


def _train(config, workdir, stop_after: int = 0) -> dict:
    """`trainer.train`, sending this process SIGTERM right after step `stop_after`."""

    def after_step(step: int) -> None:
        if step == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)

    return trainer.train(config, workdir, after_step=after_step)


def _losses(workdir) -> dict[int, float]:
    return {step: record["loss"] for step, record in metrics_log.read_metrics(str(workdir)).items()}


def _best_params(workdir) -> list[np.ndarray]:
    return jax.tree.leaves(checkpoints.load_model(workdir / trainer.BEST_DIR)[1])


@pytest.fixture(scope="module")
def straight(toy, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    return workdir, _train(_config(toy), workdir)


def test_sigterm_saves_and_the_rerun_ends_as_an_uninterrupted_run(toy, straight, tmp_path):
    straight_dir, straight_results = straight
    stopped = _train(_config(toy), tmp_path, stop_after=STOP_AFTER)
    assert stopped == {"task": "sst2", "stopped_at_step": STOP_AFTER, "seed": 0}
    assert sorted(os.listdir(tmp_path / "checkpoints")) == [str(STOP_AFTER)]  # keep_checkpoints=1
    assert not (tmp_path / trainer.RESULTS_FILE).exists()

    resumed = _train(_config(toy), tmp_path)
    for key in ("dev", "best_step", "total_steps", "seed"):
        assert resumed[key] == straight_results[key], key
    assert _losses(tmp_path) == _losses(straight_dir)
    assert sorted(_losses(tmp_path)) == list(range(1, TOTAL + 1))
    for got, want in zip(_best_params(tmp_path), _best_params(straight_dir), strict=True):
        np.testing.assert_array_equal(got, want)


def test_rerun_of_a_finished_run_trains_no_more_and_reports_the_same(toy, straight, tmp_path):
    straight_dir, straight_results = straight
    again = _train(_config(toy), straight_dir)
    assert again["dev"] == straight_results["dev"] and again["best_step"] == straight_results["best_step"]
    assert sorted(os.listdir(straight_dir / "checkpoints")) == [str(TOTAL)]


def test_resume_with_another_batch_size_is_refused(toy, straight):
    from bert_jax.errors import ConfigError

    straight_dir, _ = straight
    with pytest.raises(ConfigError, match=r"batch_size=16 but .* was saved with batch_size=8"):
        _train(_config(toy, batch_size=16, eval_batch_size=16), straight_dir)


# --------------------------------------------------------------------------
# Distillation runs in the same loop: the same guarantee


@pytest.fixture(scope="module")
def distill_teacher(tmp_path_factory):
    """(fine-tuned teacher workdir, GLUE folder) on the toy SST-2."""
    _, glue, _, teacher = toy_tasks.write_teacher(tmp_path_factory.mktemp("distill_resume"), n_train=40, n_dev=12)
    return teacher, glue


def _distill_config(distill_teacher):
    from bert_jax.compress.config import distill_config

    teacher, glue = distill_teacher
    c = distill_config("sst2")
    c.teacher, c.data_dir, c.max_seq_length, c.student_layers = str(teacher), str(glue), 16, 1
    c.total_steps, c.batch_size, c.eval_batch_size, c.throughput_runs = TOTAL, 8, 8, 2
    c.eval_every_steps, c.checkpoint_every_steps, c.log_every_steps, c.tensorboard = 2, 2, 1, False
    c.hidden_weight = 1.0  # the intermediate losses too
    return c


def _distill(config, workdir, stop_after: int = 0) -> dict:
    from bert_jax.compress import distill

    def after_step(step: int) -> None:
        if step == stop_after:
            os.kill(os.getpid(), signal.SIGTERM)

    return distill.run(config, str(workdir), after_step=after_step)


def test_distillation_stopped_by_sigterm_resumes_to_the_uninterrupted_student(distill_teacher, tmp_path):
    straight = _distill(_distill_config(distill_teacher), tmp_path / "straight")
    stopped = _distill(_distill_config(distill_teacher), tmp_path / "stopped", stop_after=STOP_AFTER)
    assert stopped == {"task": "sst2", "stopped_at_step": STOP_AFTER}
    resumed = _distill(_distill_config(distill_teacher), tmp_path / "stopped")

    def timeless(side: dict) -> dict:
        return {k: v for k, v in side.items() if k != "examples_per_s"}

    assert timeless(resumed["student"]) == timeless(straight["student"])
    assert timeless(resumed["teacher"]) == timeless(straight["teacher"])
    assert _losses(tmp_path / "stopped") == _losses(tmp_path / "straight")
    assert sorted(_losses(tmp_path / "stopped")) == list(range(1, TOTAL + 1))
    for got, want in zip(_best_params(tmp_path / "stopped"), _best_params(tmp_path / "straight"), strict=True):
        np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------
# Bad settings of the loop, one line each


def test_unknown_on_nan_is_refused(toy, tmp_path):
    from bert_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^config.on_nan='maybe'; expected 'stop' or 'skip'$"):
        trainer.train(_config(toy, on_nan="maybe"), tmp_path)


def test_accumulation_that_does_not_split_the_batch_is_refused(toy, tmp_path):
    from bert_jax.errors import ConfigError

    config = _config(toy)
    config.optimizer.grad_accum_steps = 3
    with pytest.raises(ConfigError, match=r"^config.batch_size=8 with optimizer.grad_accum_steps=3 gives micro-batches"):
        trainer.train(config, tmp_path)
