"""Periodic evaluation reads the held-out batches once per phase and keeps
them: every evaluation would read the same batches again (fixed seed, no
shuffle), and building the input pipeline costs far more than running it."""

from train_utils import tiny_config

from bert_jax.config import model_config
from bert_jax.train import metrics_log, pretraining


def test_three_evaluations_build_the_held_out_source_once(tmp_path):
    config = tiny_config(total_steps=3, eval_every_steps=1, checkpoint_every_steps=0)
    workdir = str(tmp_path / "run")
    real = pretraining.default_source_factory(config, workdir, model_config(config))
    built = []

    def counting(spec, split, files, state):
        built.append(split)
        return real(spec, split, files, state)

    pretraining.train(config, workdir, source_factory=counting)
    evals = metrics_log.read_metrics(workdir, split="eval")
    assert sorted(evals) == [1, 2, 3]
    assert all(evals[step]["batches"] == config.eval_steps for step in evals)
    assert built.count("eval") == 1
