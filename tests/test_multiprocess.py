"""Multi-host training on one machine (gloo collectives over CPU devices),
on real shards: the losses depend on the global batch, not on the process count.

1 process x 8 devices is the reference (4 steps, eval at the end). The same
run stopped after 2 steps on 4 processes x 2 devices and resumed from its
checkpoint on 2 processes x 4 devices logs the same train losses at every
step and the same eval loss at the end (docs/data.md: each process reads its streams).
"""

import os
import socket
import subprocess
import sys

import pytest
from train_utils import CLI_TINY
from xla_env import xla_flags

from bert_jax.data import input_pipeline
from bert_jax.train import metrics_log

VOCAB = 2000  # write_random_shards draws token ids from [1000, vocab)
ARGS = [
    *[a for a in CLI_TINY if not a.startswith(("--config.data.synthetic", "--config.model.vocab_size"))],
    f"--config.model.vocab_size={VOCAB}",
    "--config.data.corpus=",  # the demo's built-in corpus: not here, the shards below are the data
    "--config.data.vocab_size=0",
    "--config.eval_steps=2",
    "--config.checkpoint_every_steps=2",
    "--config.data.shuffle_buffer=8",
]
TIMEOUT = 480


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """8 train files (one per automatic stream: batch 8) and 2 eval files (shared by the streams)."""
    root = tmp_path_factory.mktemp("shards")
    for name, files in (("train", 8), ("eval", 2)):
        input_pipeline.write_random_shards(
            str(root / name),
            num_files=files,
            records_per_file=12,
            max_seq_length=16,
            max_predictions_per_seq=4,
            masking="static",
            vocab_size=VOCAB,
            seed=files,
        )
    return str(root / "train"), str(root / "eval")


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(devices))
    return env


def _run(repo_root, workdir, shards, processes: int, steps: int, *extra: str) -> None:
    """`bert-jax pretrain` on `processes` processes x 8/`processes` devices; asserts each exits 0."""
    train, evals = shards
    port = _free_port()
    cmd = [
        sys.executable, "-m", "bert_jax.cli", "pretrain", "--config=configs/demo.py", f"--workdir={workdir}",
        *ARGS, f"--config.data.train_files={train}", f"--config.data.eval_files={evals}",
        f"--config.total_steps={steps}", *extra,
    ]  # fmt: skip
    distributed = [f"--coordinator_address=localhost:{port}", f"--num_processes={processes}"]
    procs = [
        subprocess.Popen(
            cmd + (distributed + [f"--process_id={i}"] if processes > 1 else []),
            cwd=repo_root,
            env=_env(8 // processes),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(processes)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, out[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_stopped_on_four_processes_resumed_on_two_matches_one(tmp_path, repo_root, shards):
    elastic, single = tmp_path / "elastic", tmp_path / "single"
    # No eval on 4 processes: one compile fewer in each of the slowest run's processes (2 cores in CI).
    _run(repo_root, elastic, shards, 4, 2, "--config.eval_steps=0")
    assert sorted(os.listdir(elastic / "checkpoints")) == ["2"]
    _run(repo_root, elastic, shards, 2, 4)  # resumes from step 2
    # The reference runs after the others: a slow peer (still compiling) can
    # otherwise outlast gloo's connect timeout on a busy machine.
    _run(repo_root, single, shards, 1, 4)
    one, both = metrics_log.read_metrics(str(single)), metrics_log.read_metrics(str(elastic))
    assert sorted(both) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert both[step]["loss"] == pytest.approx(one[step]["loss"], rel=1e-5), step
    eval_one, eval_both = (metrics_log.read_metrics(str(w), split="eval") for w in (single, elastic))
    assert eval_both[4]["loss"] == pytest.approx(eval_one[4]["loss"], rel=1e-5)
    assert eval_both[4]["examples"] == eval_one[4]["examples"] == 16
