"""Test-wide setup: 8 simulated CPU devices, shared paths and tiny models.

XLA_FLAGS must be set before JAX initialises its backends, hence here.
"""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The reference packages (transformers, sentence-transformers, bert-score) run
# on PyTorch; with TensorFlow and Keras 3 installed, transformers would try its
# TF side (which needs tf-keras) for whichever test imports it first.
os.environ.setdefault("USE_TF", "0")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """../shared beside the checkout; tests needing it skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (the shared books/GLUE data)")
    return SHARED
