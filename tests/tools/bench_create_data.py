"""create-data against google-research/bert's create_pretraining_data.py: same text, same settings.

    python tests/tools/bench_create_data.py --workdir=/tmp/bench-cd --books=17 --dupe_factor=3 \
        --orig_dir=/path/to/google-research-bert [--reps=3] [--workers=1,2]

Input: the first `--books` books of `--books_dir` (0: all, ~45 MB), written once
by our reader and segmenter in the original's format (one sentence per line,
a blank line between documents), so both programs read the same sentences.
Vocab: `--vocab_file`, else an 8000-token WordPiece vocab built once from the
`A*` books. The original runs under TF 2 through a small shim written into
the workdir (tf.flags -> absl.flags, tf.logging/gfile/python_io/app ->
tf.compat.v1); its code is never copied here: pass the directory of a
google-research/bert checkout (`create_pretraining_data.py`,
`tokenization.py`), or leave `--orig_dir` out to time ours alone.

Runs are interleaved (original, ours with each worker count, then again)
and medians reported: wall seconds, CPU seconds (user + sys of the whole
process tree: this process is a child subreaper, so worker and forkserver
processes are counted too), instances, instances per wall second and per
CPU second, the ratios to the original, and ours' in-run instances/s (from
the first block handed out to the last shard written: no imports, no
worker start-up). Numbers go to stdout and to WORKDIR/results.json.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

_SHIM = '''"""Run google-research/bert's TF1 create_pretraining_data.py under TF 2 (bench shim)."""
import os, runpy, sys
import tensorflow as tf
from absl import flags as absl_flags
v1 = tf.compat.v1
tf.flags, tf.logging, tf.gfile, tf.python_io, tf.app = absl_flags, v1.logging, v1.gfile, v1.python_io, v1.app
orig = os.environ["BERT_ORIG_DIR"]
sys.path.insert(0, orig)
runpy.run_path(os.path.join(orig, "create_pretraining_data.py"), run_name="__main__")
'''
_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    """Orphaned descendants (the forkserver, its workers) become our children, so their CPU is counted."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("warning: prctl(PR_SET_CHILD_SUBREAPER) failed; CPU may miss worker processes", file=sys.stderr)


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def run_measured(command: list[str], env: dict, log_path: str) -> dict:
    """Run `command`; wall seconds and user+sys CPU seconds of its whole process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    _reap_all()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed ({process.returncode}); see {log_path}")
    return {"wall_s": wall, "cpu_s": cpu, "stdout": process.stdout}


def prepare_input(books_dir: str, books: int, path: str) -> None:
    """The first `books` books (0: all) as one sentence per line, a blank line between books."""
    from bert_jax.data import corpus

    files = sorted(glob.glob(os.path.join(books_dir, "*.txt")))
    files = files[:books] if books else files
    with open(path + ".tmp", "w", encoding="utf-8") as out:
        for doc in corpus.iter_documents(",".join(files), "file"):
            out.write("\n".join(doc.sentences) + "\n\n")
    os.replace(path + ".tmp", path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--books_dir", default="/work/shared/data/books/train")
    parser.add_argument("--books", type=int, default=17, help="first N books (0: all)")
    parser.add_argument("--vocab_file", default="")
    parser.add_argument(
        "--orig_dir", default="", help="google-research/bert checkout; empty: skip the original"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--dupe_factor", type=int, default=3)
    parser.add_argument("--max_seq_length", type=int, default=128)
    args = parser.parse_args()

    os.makedirs(args.workdir, exist_ok=True)
    _become_subreaper()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "BERT_ORIG_DIR": args.orig_dir}
    text = os.path.join(args.workdir, f"books{args.books}.txt")
    if not os.path.exists(text):
        prepare_input(args.books_dir, args.books, text)
    vocab = args.vocab_file or os.path.join(args.workdir, "vocab8k.txt")
    if not os.path.exists(vocab):
        run_measured(
            [
                "bert-jax",
                "build-vocab",
                f"--input={args.books_dir}/A*.txt",
                f"--output={vocab}",
                "--vocab_size=8000",
            ],
            env,
            os.path.join(args.workdir, "build-vocab.log"),
        )
    settings = [
        f"--vocab_file={vocab}",
        "--do_lower_case=True",
        f"--max_seq_length={args.max_seq_length}",
        "--max_predictions_per_seq=20",
        "--masked_lm_prob=0.15",
        f"--dupe_factor={args.dupe_factor}",
        "--random_seed=12345",
        "--short_seq_prob=0.1",
    ]
    runs: dict[str, list[str]] = {}
    if args.orig_dir:
        if not os.path.exists(os.path.join(args.orig_dir, "create_pretraining_data.py")):
            sys.exit(
                f"--orig_dir {args.orig_dir}: no create_pretraining_data.py (a google-research/bert checkout)"
            )
        shim = os.path.join(args.workdir, "run_orig.py")
        with open(shim, "w") as f:
            f.write(_SHIM)
        out = os.path.join(args.workdir, "orig.tfrecord")
        runs["original"] = [sys.executable, shim, f"--input_file={text}", f"--output_file={out}", *settings]
    for w in (int(x) for x in args.workers.split(",")):
        out = os.path.join(args.workdir, f"ours{w}")
        runs[f"ours, {w} worker{'s' if w > 1 else ''}"] = [
            "bert-jax", "create-data", f"--input_file={text}", "--input_format=sentences", f"--output_file={out}",
            *settings, f"--num_workers={w}", "--num_shards=1", "--noprogress", "--json",
        ]  # fmt: skip

    results: dict[str, list[dict]] = {name: [] for name in runs}
    for rep in range(args.reps):
        for name, command in runs.items():
            measured = run_measured(
                command, env, os.path.join(args.workdir, f"{name.split(',')[0]}-{rep}.log")
            )
            if name == "original":
                with open(os.path.join(args.workdir, f"original-{rep}.log")) as f:
                    found = re.findall(r"Wrote (\d+) total instances", f.read())
                instances = int(found[-1]) if found else 0
            else:
                report = json.loads(measured["stdout"])
                instances = report["counts"]["instances"]
                measured["in_run_per_s"] = report["timing"]["instances_per_s"]
            measured.pop("stdout")
            measured["load_average"] = os.getloadavg()[0]
            results[name].append({**measured, "instances": instances})
            in_run = f"  in-run {measured['in_run_per_s']:.0f} inst/s" if "in_run_per_s" in measured else ""
            print(f"rep {rep} {name:18s} wall {measured['wall_s']:7.1f} s  cpu {measured['cpu_s']:7.1f} s  "
                  f"instances {instances}{in_run}  load {measured['load_average']:.1f}", flush=True)  # fmt: skip

    summary = {}
    for name, reps in results.items():
        wall = statistics.median(r["wall_s"] for r in reps)
        cpu = statistics.median(r["cpu_s"] for r in reps)
        instances = reps[-1]["instances"]
        in_run = [r["in_run_per_s"] for r in reps if "in_run_per_s" in r]
        summary[name] = {"wall_s": wall, "cpu_s": cpu, "instances": instances,
                         "per_wall_s": instances / wall, "per_cpu_s": instances / cpu,
                         "in_run_per_s": statistics.median(in_run) if in_run else None, "runs": reps}  # fmt: skip
    print(f"\ninput {text} ({os.path.getsize(text) / 1e6:.1f} MB), dupe_factor {args.dupe_factor}, "
          f"{args.reps} interleaved reps, medians; load average now {os.getloadavg()}")  # fmt: skip
    print(f"{'run':18s} {'instances':>9s} {'wall s':>7s} {'CPU s':>7s} {'inst/s':>8s} {'inst/CPU-s':>10s}"
          f" {'x orig (wall)':>13s} {'x orig (CPU)':>12s} {'in-run inst/s':>13s}")  # fmt: skip
    base = summary.get("original")
    for name, s in summary.items():
        ratios = (f"{s['per_wall_s'] / base['per_wall_s']:13.1f} {s['per_cpu_s'] / base['per_cpu_s']:12.1f}"
                  if base else "")  # fmt: skip
        in_run = f" {s['in_run_per_s']:13.0f}" if s["in_run_per_s"] else ""
        print(f"{name:18s} {s['instances']:9d} {s['wall_s']:7.1f} {s['cpu_s']:7.1f} {s['per_wall_s']:8.0f} "
              f"{s['per_cpu_s']:10.0f} {ratios}{in_run}")  # fmt: skip
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "load_average": os.getloadavg(), "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
