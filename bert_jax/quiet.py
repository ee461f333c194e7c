"""A quiet start: `bert-jax` prints no TensorFlow / XLA / CUDA start-up noise.

On a machine without a GPU, importing TensorFlow and JAX prints lines such as
`cudart_stub.cc:31] Could not find cuda drivers on your machine`,
`failed call to cuInit: ... UNKNOWN ERROR (303)`, `oneDNN custom operations
are on`, `WARNING: All log messages before absl::InitializeLog() ...`, the
jax CUDA plugin's traceback (`Unable to load CUDA. Is it installed?`) and
libtpu's `could not determine TPU accelerator type`. A new user reads them as
failures; none is. `quiet_startup()`, called by the console script before
any command imports TensorFlow or JAX, removes them at their source where an
environment variable can, and filters the rest:

* `TF_CPP_MIN_LOG_LEVEL=1` (unless set): TensorFlow's C++ INFO lines
  (cpu_feature_guard's instruction-set notice); warnings and errors stay.
* `JAX_PLATFORMS=cpu` (unless set), only where no accelerator device node
  exists (`/dev/nvidia*`, `/dev/dxg`, `/dev/kfd`, `/dev/accel*`,
  `/dev/vfio/<n>`): JAX would end up on the CPU anyway, and no longer
  initialises the CUDA plugin or libtpu just to have them fail loudly. On a
  GPU or TPU machine nothing is set, so the accelerator is used as before.
* The remaining lines are logged by the C++ libraries' static initialisers
  as they load, before any setting is read, so a small filter process sits
  on stderr (file descriptor 2) and drops exactly the lines in `NOISE` (and,
  where there is no NVIDIA device, `NO_GPU_NOISE`); every other byte,
  warnings, errors and tracebacks included, passes through unchanged and at
  once. It outlives a crash of the command, so a fatal error's last line
  still arrives.

`BERT_JAX_VERBOSE_STARTUP=1` turns all of this off (so does setting
TF_CPP_MIN_LOG_LEVEL / JAX_PLATFORMS yourself, for what they govern).
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import signal
import sys
import time

VERBOSE_ENV = "BERT_JAX_VERBOSE_STARTUP"

# An absl / TSL C++ log line: `I0000 00:00:1796194505.375754    6028 cudart_stub.cc:31] message`.
_LOG_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ (?P<file>[\w.]+):\d+\] (?P<message>.*)")

# (source file, message) of C++ log lines that are noise on every machine.
NOISE = (
    ("port.cc", re.compile(r"oneDNN custom operations are on\.")),
    ("py_utils.cc", re.compile(r"TF-TRT Warning: Could not find TensorRT")),
    # Logged at error level the first time a tf.data op meets a dtype oneDNN lacks; TF then uses Eigen.
    ("util.cc", re.compile(r"oneDNN supports DT_\w+ only on platforms with AVX-512\. Falling back to the default")),
)
# ... and on a machine with no NVIDIA device (where, on a GPU machine, they would be real trouble).
NO_GPU_NOISE = (
    ("cudart_stub.cc", re.compile(r"Could not find cuda drivers on your machine, GPU will not be used\.")),
    ("cuda_platform.cc", re.compile(r"failed call to cuInit: ")),
    ("cuda_executor.cc", re.compile(r"failed call to cuInit: ")),
    ("cuda_diagnostics.cc", re.compile(r".")),  # its follow-up to the failed cuInit
)
# Whole lines printed by absl itself, not through a log call.
NOISE_LINES = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",)

_ACCELERATOR_NODES = ("/dev/nvidia*", "/dev/dxg", "/dev/kfd", "/dev/accel*", "/dev/vfio/[0-9]*")


def quiet_startup() -> None:
    """Sets the environment defaults and starts the stderr filter (see the module
    docstring); does nothing with BERT_JAX_VERBOSE_STARTUP set. Call it before
    TensorFlow or JAX is imported, while the process has one thread."""
    if os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if not _has_device("/dev/nvidia*", *_ACCELERATOR_NODES):
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    rules = NOISE + (() if _has_device("/dev/nvidia*", "/dev/dxg") else NO_GPU_NOISE)
    _filter_stderr(rules)


def _has_device(*patterns: str) -> bool:
    return any(glob.glob(p) for p in patterns)


def is_noise(line: str, rules=NOISE + NO_GPU_NOISE) -> bool:
    """Whether one stderr line (without its newline) is start-up noise under `rules`."""
    if line in NOISE_LINES:
        return True
    match = _LOG_LINE.fullmatch(line)
    return bool(match) and any(
        match["file"] == file and pattern.match(match["message"]) for file, pattern in rules
    )


def _could_be_noise(partial: str) -> bool:
    """Whether a line begun but not yet ended may still turn out to be noise
    (a C++ log line's `I0...`, absl's `WARNING: All log ...`), so it waits for
    its end; anything else passes through at once."""
    if len(partial) > 4096:
        return False
    return any(line.startswith(partial) for line in NOISE_LINES) or re.match(r"[IWEF](\d|$)", partial) is not None


def _filter_stderr(rules) -> None:
    """Points fd 2 at a pipe read by a forked filter process that writes all
    but the noise to the original stderr. The filter ends when every writer
    has closed the pipe: at this process's exit, or its death."""
    try:
        read_fd, write_fd = os.pipe()
        sys.stderr.flush()
        pid = os.fork()
    except OSError:
        return  # no filter, only noise: never a reason to fail a command
    if pid == 0:  # the filter
        try:
            os.close(write_fd)
            for fd in (0, 1):  # hold no end of the command's stdin/stdout open
                os.close(fd)
            # Ctrl-C and SIGTERM are for the command: it may still print its goodbye.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _forward(read_fd, 2, rules)
        finally:
            os._exit(0)
    os.close(read_fd)
    original = os.dup(2)
    os.set_inheritable(original, False)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    atexit.register(_finish, original, pid)


def _finish(original: int, pid: int) -> None:
    """At exit: stderr back to the original (closing our end of the pipe), then
    give the filter a moment to print what it holds, so it lands before the shell prompt."""
    sys.stderr.flush()
    os.dup2(original, 2)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.005)


def _forward(read_fd: int, out_fd: int, rules) -> None:
    """Copies read_fd to out_fd line by line (a line ends in \\n or \\r),
    dropping noise lines. A line that cannot be noise is written as soon as
    its first bytes arrive (a prompt, a progress line), the rest as it comes."""
    pending = b""  # the start of a line that may still be noise
    passing = False  # inside a line already known not to be noise
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        out = []
        data = pending + chunk
        pending = b""
        while data:
            ends = [i for i in (data.find(b"\n"), data.find(b"\r")) if i >= 0]
            end = min(ends) if ends else -1  # a progress line's \r ends a line too
            piece, data = (data, b"") if end < 0 else (data[: end + 1], data[end + 1 :])
            complete = end >= 0
            if passing:
                out.append(piece)
                passing = not complete
                continue
            text = piece.rstrip(b"\r\n").decode("utf-8", "replace")
            if complete:
                if not is_noise(text, rules):
                    out.append(piece)
            elif _could_be_noise(text):
                pending = piece
            else:
                out.append(piece)
                passing = True
        if out:
            _write_all(out_fd, b"".join(out))
    if pending:
        _write_all(out_fd, pending)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except InterruptedError:
            continue
        except OSError:
            return  # the original stderr is gone: nothing more to show
