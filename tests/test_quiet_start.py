"""A quiet start: `bert-jax` prints none of TensorFlow's, XLA's or CUDA's
start-up lines, while the command's own errors and every line that is not
known noise still reach stderr (bert_jax/quiet.py)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from bert_jax import quiet

BERT_JAX = shutil.which("bert-jax") or "bert-jax"


def _env(**extra) -> dict:
    """The environment a user has: none of the settings quiet_startup would otherwise default."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "JAX_PLATFORMS", quiet.VERBOSE_ENV, "BERT_JAX_TRACEBACK")}
    return {**env, **extra}


def _bert_jax(*args, stdin: str = "", **env) -> subprocess.CompletedProcess:
    return subprocess.run([BERT_JAX, *args], input=stdin, capture_output=True, text=True, env=_env(**env),
                          timeout=300)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("quiet") / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]) + "\n")
    return path


def test_tokenize_prints_nothing_on_stderr(vocab):
    done = _bert_jax("tokenize", f"--vocab={vocab}", stdin="hello world\n")
    assert done.returncode == 0
    assert done.stderr == ""
    assert json.loads(done.stdout) == {"tokens": ["hello", "world"], "ids": [5, 6]}


@pytest.mark.parametrize("command", ["tokenize", "prune", "finetune"])
def test_help_prints_nothing_on_stderr(command):
    done = _bert_jax(command, "--help")
    assert done.returncode == 0
    assert done.stderr == ""
    assert f"flags of bert-jax {command}:" in done.stdout


def test_a_real_error_still_prints_its_one_line(vocab):
    missing = vocab.parent / "missing.txt"
    done = _bert_jax("tokenize", f"--vocab={missing}", stdin="hello\n")
    assert done.returncode == 2
    assert done.stderr == (f"bert-jax tokenize: error: vocab {missing}: no such file; "
                           "pass a vocab.txt, vocab.json (+ merges.txt), *.model or tokenizer.json\n")


def test_a_traceback_and_a_crash_reach_stderr_whole():
    """What a command prints just before it dies (here: abort(), as a failed
    C++ check does) still arrives: the filter is a process of its own."""
    code = (
        "import os\n"
        "from bert_jax import quiet\n"
        "quiet.quiet_startup()\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'F0000 00:00:1.5 7 foo.cc:3] Check failed: x == y\\n')\n"
        "os.abort()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert done.returncode != 0
    assert done.stderr == "F0000 00:00:1.5 7 foo.cc:3] Check failed: x == y\n"


def test_verbose_startup_leaves_stderr_and_the_environment_alone():
    code = ("import os, sys\nfrom bert_jax import quiet\nquiet.quiet_startup()\n"
            "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('JAX_PLATFORMS'))\n"
            "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(**{quiet.VERBOSE_ENV: "1"}), timeout=60)
    assert done.stdout == "None None\n"
    assert done.stderr == quiet.NOISE_LINES[0] + "\n"


# --------------------------------------------------------------------------
# The filter, byte by byte


def _filtered(data: bytes, rules=quiet.NOISE + quiet.NO_GPU_NOISE) -> bytes:
    """`data` through quiet._forward, in chunks that split lines anywhere."""
    src_r, src_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(src_w)
        os.close(out_r)
        quiet._forward(src_r, out_w, rules)
        os._exit(0)
    os.close(src_r)
    os.close(out_w)
    for i in range(0, len(data), 7):
        os.write(src_w, data[i : i + 7])
    os.close(src_w)
    with os.fdopen(out_r, "rb") as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


NOISY = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796194574.729539    7931 port.cc:153] oneDNN custom operations are on. You may see "
    b"slightly different numerical results due to floating-point round-off errors.\n"
    b"E0000 00:00:1796259894.209205   30645 util.cc:131] oneDNN supports DT_STRING only on platforms with "
    b"AVX-512. Falling back to the default Eigen-based implementation if present.\n"
    b"I0000 00:00:1796194574.729948    7931 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    b"GPU will not be used.\n"
    b"E0000 00:00:1796194576.260460    7931 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    b"Failed call to cuInit: UNKNOWN ERROR (303)\n"
)
KEPT = (
    b"W0000 00:00:1796194574.7 7931 some_op.cc:9] a real warning\n"
    b"E1202 07:13:43.1 7931 other.cc:1] a real error\n"
    b"Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n"
    b"step 10 loss 3.2\rstep 20 loss 3.1\r"
)


def test_filter_drops_the_start_up_noise_and_keeps_every_other_byte():
    assert _filtered(NOISY + KEPT + NOISY) == KEPT


def test_with_an_nvidia_device_the_cuda_failures_are_shown():
    gpu_lines = NOISY.splitlines(keepends=True)[3:]
    assert _filtered(NOISY, quiet.NOISE) == b"".join(gpu_lines)


def test_jax_platforms_is_set_to_cpu_only_without_an_accelerator(monkeypatch):
    monkeypatch.setattr(quiet, "_filter_stderr", lambda rules: None)
    for name in ("TF_CPP_MIN_LOG_LEVEL", "JAX_PLATFORMS", quiet.VERBOSE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(quiet.glob, "glob", lambda pattern: ["/dev/nvidia0"] if pattern == "/dev/nvidia*" else [])
    quiet.quiet_startup()
    assert "JAX_PLATFORMS" not in os.environ  # a GPU machine: JAX picks its GPU as before
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    monkeypatch.setattr(quiet.glob, "glob", lambda pattern: [])
    quiet.quiet_startup()
    assert os.environ["JAX_PLATFORMS"] == "cpu"
    monkeypatch.setenv("JAX_PLATFORMS", "tpu")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    quiet.quiet_startup()
    assert (os.environ["JAX_PLATFORMS"], os.environ["TF_CPP_MIN_LOG_LEVEL"]) == ("tpu", "0")  # the user's own
