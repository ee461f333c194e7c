"""Time to a target held-out MLM accuracy with bert-jax, from raw text.

    python tests/tools/ttt_bertjax.py --books=../shared/data/books --workdir=/tmp/ttt \\
        --out=/tmp/ttt/bert-jax.jsonl --target=0.30 [--size=tiny --batch_size=64 ...]

Stages, each timed: `bert-jax build-vocab` (WordPiece, uncased) on BOOKS/train,
`bert-jax create-data` (MLM only: --mode=mlm_packed, unmasked rows, masked
anew each step in tf.data) for BOOKS/train and BOOKS/eval (the held-out
set), then `bert-jax pretrain` with config.target_mlm_accuracy: it stops at
the first periodic held-out evaluation that reaches the target.
Data preparation = vocab + both shard sets; training = the pretrain command
from its launch (imports, compilation and evaluations included).

The curve file (the common format the peers' drivers write too), JSON lines:
  1. {"pipeline", "versions", "command", "model": {layers, hidden, heads,
     intermediate, vocab_size}, "seq_len", "batch_size", "threads"}
  2. one line per held-out evaluation: {"wall_s": seconds since raw text
     (data preparation included), "train_s": seconds since training started,
     "step", "mlm_accuracy"}
  3. {"data_prep_s", "target", "reached", "time_to_target_s": wall_s of the
     first evaluation at or above the target (raw text to target) or null,
     "train_to_target_s": its train_s or null, "best_mlm_accuracy", "best_step"}
Each evaluation's time is when this driver saw its record in
WORKDIR/run/metrics.jsonl (polled every --poll_s seconds). A target never
reached: the run ends at --total_steps, the last line says reached false,
this script prints the best accuracy and exits 0.

Threads: the commands run under `taskset` on the first --threads cores (when
fewer than the machine has) and `nice -n --nice`. Read the curves with
tests/tools/ttt_plot.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (layers, hidden, heads) of the sizes; intermediate = 4 * hidden (bert_jax.config.SIZES).
SIZES = {"tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8), "medium": (8, 512, 8)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--books", default=os.path.join(REPO, "..", "shared", "data", "books"))
    p.add_argument(
        "--workdir", required=True, help="vocab, shards and the pretrain workdir go here (must be new)"
    )
    p.add_argument("--out", required=True, help="the curve file (JSON lines)")
    p.add_argument("--target", type=float, required=True, help="held-out MLM accuracy, in (0, 1)")
    p.add_argument("--size", default="tiny", choices=sorted(SIZES))
    p.add_argument("--vocab_size", type=int, default=8192)
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument(
        "--max_predictions", type=int, default=20, help="masked positions per row at most (15%% of 128)"
    )
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--warmup_steps", type=int, default=300)
    p.add_argument(
        "--total_steps",
        type=int,
        default=4000,
        help="the linear decay ends here; the run stops earlier at the target",
    )
    p.add_argument("--eval_every", type=int, default=100, help="steps between held-out evaluations")
    p.add_argument("--eval_batches", type=int, default=20, help="batches per held-out evaluation")
    p.add_argument("--threads", type=int, default=2, help="CPU cores the commands may use")
    p.add_argument("--nice", type=int, default=19)
    p.add_argument("--poll_s", type=float, default=0.5)
    args = p.parse_args(argv)
    if not 0.0 < args.target < 1.0:
        p.error(f"--target={args.target}; use a held-out MLM accuracy in (0, 1)")
    if os.path.exists(args.workdir) and os.listdir(args.workdir):
        p.error(
            f"--workdir={args.workdir} is not empty; pick a new directory (the stages are timed from scratch)"
        )
    for split in ("train", "eval"):
        if not os.path.isdir(os.path.join(args.books, split)):
            p.error(f"--books={args.books} has no {split}/ folder of .txt books")
    return args


def prefix(args) -> list[str]:
    """nice, and taskset on the first `threads` cores when the machine has more."""
    cmd = ["nice", "-n", str(args.nice)]
    if args.threads < (os.cpu_count() or 1):
        cmd += ["taskset", "-c", f"0-{args.threads - 1}"]
    return cmd


def bert_jax(*argv: str) -> list[str]:
    return [sys.executable, "-m", "bert_jax.cli", *argv]


def run_stage(name: str, cmd: list[str], log_dir: str) -> float:
    """Runs one data-preparation command to completion; its wall seconds."""
    start = time.monotonic()
    with open(os.path.join(log_dir, f"{name}.log"), "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
    seconds = time.monotonic() - start
    if code != 0:
        sys.exit(f"{name} failed (exit {code}); see {log_dir}/{name}.log")
    print(f"{name}: {seconds:.1f} s", flush=True)
    return seconds


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def data_prep_commands(args) -> list[tuple[str, list[str]]]:
    w = args.workdir
    vocab = os.path.join(w, "vocab.txt")
    stages = [
        (
            "build_vocab",
            bert_jax(
                "build-vocab",
                f"--input={args.books}/train/*.txt",
                f"--output={vocab}",
                f"--vocab_size={args.vocab_size}",
            ),
        ),
    ]
    for split in ("train", "eval"):
        stages.append(
            (
                f"create_data_{split}",
                bert_jax(
                    "create-data",
                    f"--input_file={args.books}/{split}/*.txt",
                    f"--output_file={w}/{split}",
                    f"--vocab_file={vocab}",
                    "--mode=mlm_packed",
                    "--masking=none",
                    "--dupe_factor=1",
                    f"--max_seq_length={args.seq_len}",
                    f"--num_workers={args.threads}",
                    "--progress=false",
                ),
            )
        )
    return [(name, prefix(args) + cmd) for name, cmd in stages]


def pretrain_command(args) -> list[str]:
    w = args.workdir
    overrides = {
        "model.vocab_size": args.vocab_size,
        "model.pair_head": "none",  # MLM only (no NSP), as RoBERTa
        "data.mode": "mlm_packed",
        "data.masking": "dynamic",  # 15% masked anew each step (80/10/10)
        "data.masked_lm_prob": 0.15,
        "data.vocab_file": f"{w}/vocab.txt",
        "data.train_files": f"{w}/train",
        "data.eval_files": f"{w}/eval",
        "data.max_seq_length": args.seq_len,
        "data.max_predictions_per_seq": args.max_predictions,
        "batch_size": args.batch_size,
        "total_steps": args.total_steps,
        "optimizer.learning_rate": args.learning_rate,
        "optimizer.warmup_steps": args.warmup_steps,
        "log_every_steps": args.eval_every,
        "eval_every_steps": args.eval_every,
        "eval_steps": args.eval_batches,
        "checkpoint_every_steps": 0,  # one checkpoint: at the target (or the end)
        "target_mlm_accuracy": args.target,
    }
    return prefix(args) + bert_jax(
        "pretrain",
        f"--config={REPO}/configs/bert_{args.size}.py",
        f"--workdir={w}/run",
        *[f"--config.{k}={v}" for k, v in overrides.items()],
    )


def versions() -> dict[str, str]:
    import flax
    import jax

    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "bert_jax": rev.stdout.strip() or "unknown",
    }


def header(args) -> dict:
    layers, hidden, heads = SIZES[args.size]
    return {
        "pipeline": "bert-jax",
        "versions": versions(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "model": {
            "layers": layers,
            "hidden": hidden,
            "heads": heads,
            "intermediate": 4 * hidden,
            "vocab_size": args.vocab_size,
        },
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "threads": args.threads,
    }


def train_and_watch(args, data_prep_s: float, out) -> tuple[list[dict], int]:
    """Runs pretrain, appending a curve line per held-out evaluation as its
    record appears in metrics.jsonl; (the curve points, pretrain's exit code)."""
    metrics = os.path.join(args.workdir, "run", "metrics.jsonl")
    points, offset = [], 0
    start = time.monotonic()
    with open(os.path.join(args.workdir, "pretrain.log"), "w") as log:
        proc = subprocess.Popen(pretrain_command(args), stdout=log, stderr=subprocess.STDOUT, env=_env())
        while True:
            done = proc.poll() is not None
            seen = time.monotonic() - start
            offset = _read_evals(metrics, offset, seen, data_prep_s, points, out)
            if done:
                break
            time.sleep(args.poll_s)
    return points, proc.returncode


def _read_evals(path: str, offset: int, seen: float, data_prep_s: float, points: list, out) -> int:
    """New eval records of metrics.jsonl (complete lines after `offset`) as curve lines; the new offset."""
    try:
        with open(path, encoding="utf-8") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    complete = chunk[: chunk.rfind("\n") + 1]
    for line in complete.splitlines():
        record = json.loads(line)
        if record.get("split") != "eval":
            continue
        point = {
            "wall_s": round(data_prep_s + seen, 2),
            "train_s": round(seen, 2),
            "step": record["step"],
            "mlm_accuracy": record["mlm_accuracy"],
            "loop_s": round(record.get("train_seconds", 0.0), 2),
        }
        points.append(point)
        out.write(json.dumps(point) + "\n")
        out.flush()
        print(
            f"step {point['step']}: held-out MLM accuracy {point['mlm_accuracy']:.4f} at {point['train_s']:.0f} s "
            "of training",
            flush=True,
        )
    return offset + len(complete.encode("utf-8"))


def summary(args, points: list[dict], data_prep_s: float) -> dict:
    hit = next((p for p in points if p["mlm_accuracy"] >= args.target), None)
    best = max(points, key=lambda p: p["mlm_accuracy"], default=None)
    return {
        "data_prep_s": round(data_prep_s, 2),
        "target": args.target,
        "reached": hit is not None,
        "time_to_target_s": hit["wall_s"] if hit else None,
        "train_to_target_s": hit["train_s"] if hit else None,
        "best_mlm_accuracy": best["mlm_accuracy"] if best else None,
        "best_step": best["step"] if best else None,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as out:
        out.write(json.dumps(header(args)) + "\n")
        out.flush()
        data_prep_s = sum(run_stage(name, cmd, args.workdir) for name, cmd in data_prep_commands(args))
        print(f"data preparation: {data_prep_s:.1f} s", flush=True)
        points, code = train_and_watch(args, data_prep_s, out)
        if code != 0:
            sys.exit(f"pretrain failed (exit {code}); see {args.workdir}/pretrain.log")
        last = summary(args, points, data_prep_s)
        out.write(json.dumps(last) + "\n")
    if last["reached"]:
        print(
            f"bert-jax reached MLM accuracy {args.target:g}: data preparation {data_prep_s:.0f} s + training "
            f"{last['train_to_target_s']:.0f} s = {last['time_to_target_s']:.0f} s from raw text"
        )
    else:
        print(
            f"target {args.target:g} not reached: best {last['best_mlm_accuracy']:.3f} at step {last['best_step']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
