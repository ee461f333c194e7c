"""Shared pieces of the time-to-accuracy peer drivers (issue 20): flags,
thread pinning, raw-text reading and the common curve format.

Not a dependency of bert-jax; imported only by `ttt_hf_flax.py` and
`ttt_keras_hub.py` next to it, which run in their own environment (the
`peers` extra). This module imports nothing outside the standard library, so
a missing peer is reported before anything heavy loads.

Curve file (JSON lines):
  first  {"pipeline", "versions", "command", "model": {layers, hidden, heads,
          intermediate, vocab_size}, "seq_len", "batch_size", "threads", ...}
  then   {"wall_s", "train_s", "step", "mlm_accuracy"} per held-out evaluation
  last   {"data_prep_s", "target", "reached", "time_to_target_s"}
"""

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shlex
import sys
import time
from pathlib import Path


class PeerError(Exception):
    """Bad input or a missing peer: one line for the user, exit status 2."""


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """The flags all three race drivers share (same names, same meaning)."""
    p = parser
    p.add_argument("--train_dir", required=True, help="folder of plain-text .txt books (training)")
    p.add_argument("--eval_dir", required=True, help="folder of plain-text .txt books (held-out)")
    p.add_argument("--out", required=True, help="curve file to write (JSON lines)")
    p.add_argument("--workdir", required=True, help="scratch folder (emptied of this driver's files)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--vocab_size", type=int, default=16000, help="WordPiece vocabulary size to train")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=5e-4)
    p.add_argument("--warmup_steps", type=int, default=500)
    p.add_argument("--max_steps", type=int, default=20000, help="stop here if the target is not reached")
    p.add_argument("--eval_every", type=int, default=250, help="optimizer steps between evaluations")
    p.add_argument(
        "--eval_batches", type=int, default=16, help="held-out sequences = eval_batches x batch_size"
    )
    p.add_argument("--target", type=float, default=0.40, help="held-out masked-token accuracy to reach")
    p.add_argument("--threads", type=int, default=2, help="CPU cores the whole run may use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max_train_s",
        type=float,
        default=0.0,
        help="> 0: also stop at the first evaluation after this many seconds of training (short indicative runs)",
    )


def require_modules(driver: str, modules: list[str], pip_hint: str) -> None:
    """Raise one clear line naming the extra when a peer library is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise PeerError(
            f"{driver}: {', '.join(missing)} not installed: pip install 'bert-jax[peers]' "
            f"(or: pip install {pip_hint})"
        )


def pin_threads(threads: int) -> list[int]:
    """Restrict this process and its children to the first `threads` CPUs.

    CPU affinity is inherited by subprocesses and respected by XLA's CPU
    thread pool, TensorFlow and the Rust tokenizers, so every peer runs on
    the same number of cores whatever its own thread settings. The thread
    variables are set too so that pools are not oversized for the cores.
    Returns the CPU ids in use."""
    cpus = sorted(os.sched_getaffinity(0))
    if threads < 1 or threads > len(cpus):
        raise PeerError(f"--threads={threads}: this machine lets us use 1..{len(cpus)} CPUs")
    use = cpus[:threads]
    os.sched_setaffinity(0, use)
    for var in (
        "OMP_NUM_THREADS",
        "RAYON_NUM_THREADS",
        "TF_NUM_INTRAOP_THREADS",
        "TF_NUM_INTEROP_THREADS",
    ):
        os.environ[var] = str(threads)
    return use


def book_files(folder: str) -> list[Path]:
    """The .txt files of a books folder in name order (the order fixes the held-out prefix)."""
    path = Path(folder)
    files = sorted(path.glob("*.txt")) if path.is_dir() else []
    if not files:
        raise PeerError(f"{folder}: no .txt files there; pass a folder of plain-text books")
    return files


def paragraphs(files: list[Path]) -> list[str]:
    """One string per paragraph: runs of non-blank lines joined with spaces.

    The books are hard-wrapped at ~70 columns; every pipeline in the race
    gets whole paragraphs (bert-jax's reader joins them the same way), so
    neither peer pays for a line break being treated as a document end."""
    out: list[str] = []
    for f in files:
        run: list[str] = []
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line:
                run.append(line)
            elif run:
                out.append(" ".join(run))
                run = []
        if run:
            out.append(" ".join(run))
    return out


def versions(packages: list[str]) -> dict[str, str]:
    """Installed versions of `packages` (and Python), for the curve header."""
    found = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


class Curve:
    """Writes the common curve format; every line is flushed as it is written
    so a run that is stopped still leaves a readable curve."""

    def __init__(self, path: str, t0: float, target: float, max_steps: int, max_train_s: float = 0.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finish()
        self.t0 = t0
        self.target = target
        self.max_steps = max_steps
        self.max_train_s = max_train_s
        self.time_to_target: float | None = None
        self.last_step = 0

    def _line(self, obj: dict) -> None:
        self.f.write(json.dumps(obj) + "\n")
        self.f.flush()

    def header(self, pipeline: str, args: argparse.Namespace, vocab_size: int, extra: dict) -> None:
        """First line: what ran, with which model and sizes."""
        obj = {
            "pipeline": pipeline,
            "versions": extra.pop("versions"),
            "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
            "model": {
                "layers": args.layers,
                "hidden": args.hidden,
                "heads": args.heads,
                "intermediate": args.intermediate,
                "vocab_size": vocab_size,
            },
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "threads": args.threads,
        }
        obj.update(extra)
        self._line(obj)

    def point(self, wall_time: float, train_t0: float, step: int, accuracy: float) -> bool:
        """One held-out evaluation at absolute time `wall_time` (time.time()).
        Returns True when the run should stop (target reached or max_steps)."""
        wall_s = wall_time - self.t0
        self._line(
            {
                "wall_s": round(wall_s, 3),
                "train_s": round(wall_time - train_t0, 3),
                "step": int(step),
                "mlm_accuracy": float(accuracy),
            }
        )
        self.last_step = int(step)
        if self.time_to_target is None and accuracy >= self.target:
            self.time_to_target = round(wall_s, 3)
        out_of_time = 0 < self.max_train_s <= wall_time - train_t0
        return self.time_to_target is not None or step >= self.max_steps or out_of_time

    def finish(self, data_prep_s: float, extra: dict | None = None) -> None:
        """Last line: data preparation time and the outcome."""
        obj = {
            "data_prep_s": round(data_prep_s, 3),
            "target": self.target,
            "reached": self.time_to_target is not None,
            "time_to_target_s": self.time_to_target,
        }
        obj.update(extra or {})
        self._line(obj)
        self.f.close()


def run_main(main) -> None:
    """Run a driver's main; a PeerError becomes one line on stderr, exit 2."""
    try:
        main()
    except PeerError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def now() -> float:
    """Wall-clock seconds (time.time(), comparable with TensorBoard event times)."""
    return time.time()
