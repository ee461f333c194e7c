"""XLA_FLAGS of the tests: one source for conftest and the subprocesses that set
their own device count. No JAX import here: conftest reads it before JAX starts."""

# Level 0 of XLA:CPU's backend optimisation: the tests compile hundreds of tiny
# programs and run each for a few steps, so LLVM's optimisation of the code
# costs more than it saves (37% of test_train_step.py's CPU seconds). Numbers
# compared exactly between two processes need the same level in both.
OPTIMIZATION = "--xla_backend_optimization_level=0"


def xla_flags(devices: int | None = None) -> str:
    """The tests' XLA_FLAGS, with `devices` simulated CPU devices (None: XLA's one)."""
    count = [] if devices is None else [f"--xla_force_host_platform_device_count={devices}"]
    return " ".join([*count, OPTIMIZATION])
