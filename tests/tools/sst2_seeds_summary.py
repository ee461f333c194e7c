"""Summarises a tests/tools/sst2_seeds.sh output folder: per-seed SST-2 dev
accuracy of bert-jax and of the PyTorch reference, mean and (population)
std of each, wall and CPU seconds per run, and the load average seen.

  python tests/tools/sst2_seeds_summary.py OUT_DIR
"""

import json
import pathlib
import re
import sys

import numpy as np


def jax_runs(out: pathlib.Path) -> dict[int, dict]:
    """{seed: {"accuracy", "time"}}: from OUT/jax (seeds in one process) and
    any OUT/jax_seed<s> (one seed per process)."""
    runs = {}
    combined = out / "jax" / "results.json"
    if combined.is_file():
        res = json.loads(combined.read_text())
        for r in res.get("runs", [res]):
            runs[r["seed"]] = {
                "accuracy": r["dev"]["accuracy"],
                "time": _time(out / "jax.time") + " (all seeds)",
            }
    else:
        for d in sorted((out / "jax").glob("seed_*/results.json")):
            r = json.loads(d.read_text())
            runs[r["seed"]] = {"accuracy": r["dev"]["accuracy"], "time": "(seeds in one process, unfinished)"}
    for d in sorted(out.glob("jax_seed*/results.json")):
        r = json.loads(d.read_text())
        runs[r["seed"]] = {"accuracy": r["dev"]["accuracy"], "time": _time(out / f"{d.parent.name}.time")}
    return runs


def torch_runs(out: pathlib.Path) -> dict[int, dict]:
    runs = {}
    for log in sorted(out.glob("torch_seed*.log")):
        seed = int(re.search(r"seed(\d+)", log.name).group(1))
        last = [line for line in log.read_text().splitlines() if line.startswith("{")]
        if last:
            acc = json.loads(last[-1])["dev"]["accuracy"]
            runs[seed] = {"accuracy": acc, "time": _time(out / f"torch_seed{seed}.time")}
    return runs


def _time(path: pathlib.Path) -> str:
    return path.read_text().strip() if path.is_file() else "?"


def main(out: str) -> None:
    out = pathlib.Path(out)
    for name, runs in (("bert-jax", jax_runs(out)), ("pytorch", torch_runs(out))):
        accs = [runs[s]["accuracy"] for s in sorted(runs)]
        for s in sorted(runs):
            print(f"{name} seed {s}: accuracy {runs[s]['accuracy']:.4f} | {runs[s]['time']}")
        if accs:
            print(f"{name}: mean {np.mean(accs):.4f} std {np.std(accs):.4f} over {len(accs)} seeds")
    loads = out / "loadavg.txt"
    if loads.is_file():
        one_min = [float(line.split()[1]) for line in loads.read_text().splitlines()]
        print(f"load average (1 min): {min(one_min):.1f}-{max(one_min):.1f}, mean {np.mean(one_min):.1f}")


if __name__ == "__main__":
    main(sys.argv[1])
