"""Multi-host training on one machine: 2 `bert-jax pretrain` processes with 2
CPU devices each (gloo collectives) log the losses of 1 process with 4."""

import os
import socket
import subprocess
import sys

import pytest
from train_utils import CLI_TINY

from bert_jax.train import metrics_log

ARGS = [*CLI_TINY, "--config.total_steps=3", "--config.eval_steps=0", "--config.checkpoint_every_steps=0"]


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return env


def _cmd(workdir, *extra):
    return [
        sys.executable,
        "-m",
        "bert_jax.cli",
        "pretrain",
        "--config=configs/demo.py",
        f"--workdir={workdir}",
        *ARGS,
        *extra,
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, repo_root):
    port = _free_port()
    procs = [
        subprocess.Popen(
            _cmd(
                tmp_path / "two",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ),
            cwd=repo_root,
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    # The reference runs after the pair: a slow peer (still compiling) can
    # otherwise outlast gloo's connect timeout on a busy machine.
    for p in procs:
        out, _ = p.communicate(timeout=480)
        assert p.returncode == 0, out[-3000:]
    single = subprocess.Popen(
        _cmd(tmp_path / "one"),
        cwd=repo_root,
        env=_env(4),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = single.communicate(timeout=480)
    assert single.returncode == 0, out[-3000:]
    one = metrics_log.read_metrics(str(tmp_path / "one"))
    two = metrics_log.read_metrics(str(tmp_path / "two"))
    assert sorted(two) == [1, 2, 3]
    for step in (1, 2, 3):
        assert two[step]["loss"] == pytest.approx(one[step]["loss"], rel=1e-5)
    assert os.listdir(tmp_path / "two" / "checkpoints") == ["3"]
