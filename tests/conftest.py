"""Test-wide setup: 8 simulated CPU devices, shared paths and tiny models.

XLA_FLAGS must be set before JAX initialises its backends, hence here.
"""

import os
import pathlib

from xla_env import xla_flags

os.environ.setdefault("XLA_FLAGS", xla_flags(devices=8))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The reference packages (transformers, sentence-transformers, bert-score) run
# on PyTorch; with TensorFlow and Keras 3 installed, transformers would try its
# TF side (which needs tf-keras) for whichever test imports it first.
os.environ.setdefault("USE_TF", "0")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _share_compiled_programs() -> str | None:
    """One JAX persistent compilation cache for the whole test run.

    Many tests compile the same tiny steps again: each `bert-jax` subprocess,
    each run that builds its steps anew (new closures miss jit's in-memory
    cache). Set here, in the process that starts the xdist workers and the
    subprocesses, so all of them read and write one folder; the size limit
    turns on JAX's file lock, so no process reads an entry half written.
    Returns the folder when this process made it (and removes it at the end).
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None  # made by the process that started this one, or the user's own
    try:
        import filelock  # noqa: F401  (JAX needs it for the lock)
    except ImportError:
        return None
    import tempfile

    folder = tempfile.mkdtemp(prefix="bert-jax-tests-xla-cache-")
    os.environ.update(
        JAX_COMPILATION_CACHE_DIR=folder,
        JAX_COMPILATION_CACHE_MAX_SIZE=str(8 << 30),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.25",
    )
    return folder


_CACHE_MADE_HERE = _share_compiled_programs()


def pytest_unconfigure(config):
    if _CACHE_MADE_HERE:
        import shutil

        shutil.rmtree(_CACHE_MADE_HERE, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """../shared beside the checkout; tests needing it skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (the shared books/GLUE data)")
    return SHARED
