"""Held-out MLM accuracy against wall time for the time-to-target race.

    python tests/tools/ttt_plot.py bert-jax.jsonl hf-flax.jsonl keras-hub.jsonl \\
        --out=ttt.png --target=0.30

Reads curve files in the common format (tests/tools/ttt_bertjax.py: a header
line, one line per held-out evaluation with wall_s, train_s, step and
mlm_accuracy, a last line with data_prep_s, target, reached and
time_to_target_s), prints a markdown table (pipeline, data preparation,
training to the target, total from raw text, ratio of the total to
bert-jax's) and draws every curve against wall time since raw text, the
target as a horizontal line. Without matplotlib it prints the table only and
says how to get the plot (pip install matplotlib).
"""

from __future__ import annotations

import argparse
import json
import sys


def read_curve(path: str) -> dict:
    """{"header", "points", "summary"} of one curve file; the summary is None
    for a run still going (no last line yet)."""
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not lines or "pipeline" not in lines[0]:
        sys.exit(
            f"{path}: not a curve file (its first line has no 'pipeline'); see tests/tools/ttt_bertjax.py"
        )
    points = [x for x in lines[1:] if "mlm_accuracy" in x and "wall_s" in x]
    summary = lines[-1] if len(lines) > 1 and "data_prep_s" in lines[-1] else None
    return {"header": lines[0], "points": points, "summary": summary, "path": path}


def time_to(curve: dict, target: float) -> tuple[float | None, float | None, float | None]:
    """(data preparation s, training-to-target s, total s) at `target`:
    the first evaluation at or above it; None where not reached."""
    summary = curve["summary"] or {}
    prep = summary.get("data_prep_s")
    if prep is None and curve["points"]:  # a run still going: wall_s counts data preparation, train_s not
        first = curve["points"][0]
        prep = first["wall_s"] - first["train_s"]
    hit = next((p for p in curve["points"] if p["mlm_accuracy"] >= target), None)
    if hit is None:
        return prep, None, None
    return prep, hit["train_s"], hit["wall_s"]


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def table(curves: list[dict], target: float) -> str:
    """The markdown table; the ratio is each total over bert-jax's total."""
    rows = {c["header"]["pipeline"]: time_to(c, target) for c in curves}
    base = rows.get("bert-jax", (None, None, None))[2]
    out = [
        f"Target held-out MLM accuracy {target:g}",
        "",
        "| pipeline | data prep s | train to target s | total s | ratio to bert-jax |",
        "|---|---:|---:|---:|---:|",
    ]
    for curve in curves:
        name = curve["header"]["pipeline"]
        prep, train, total = rows[name]
        if total is None:
            best = max(curve["points"], key=lambda p: p["mlm_accuracy"], default=None)
            train_cell = "not reached" + (
                f" (best {best['mlm_accuracy']:.3f} at {best['train_s']:.0f} s)" if best else ""
            )
            out.append(f"| {name} | {_fmt(prep)} | {train_cell} | - | - |")
            continue
        ratio = f"{total / base:.2f}" if base else "-"
        out.append(f"| {name} | {_fmt(prep)} | {_fmt(train)} | {_fmt(total)} | {ratio} |")
    return "\n".join(out)


def plot(curves: list[dict], target: float, path: str) -> bool:
    """Draws the curves into `path`; False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for curve in curves:
        h = curve["header"]
        m = h.get("model", {})
        label = (
            f"{h['pipeline']} (L{m.get('layers')}/H{m.get('hidden')}, seq {h.get('seq_len')}, "
            f"batch {h.get('batch_size')}, {h.get('threads')} threads)"
        )
        xs = [p["wall_s"] / 60 for p in curve["points"]]
        ax.plot(xs, [p["mlm_accuracy"] for p in curve["points"]], marker=".", label=label)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel("wall time since raw text (minutes; data preparation included)")
    ax.set_ylabel("held-out MLM accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("curves", nargs="+", help="curve files (JSON lines)")
    p.add_argument("--out", default="", help="PNG to draw (needs matplotlib)")
    p.add_argument("--target", type=float, default=0.0, help="default: the first file's target")
    args = p.parse_args(argv)
    curves = [read_curve(path) for path in args.curves]
    target = args.target or (curves[0]["summary"] or {}).get("target")
    if not target or not 0.0 < target < 1.0:
        p.error("--target: a held-out MLM accuracy in (0, 1) (no curve file's last line names one)")
    print(table(curves, target))
    if args.out:
        if plot(curves, target, args.out):
            print(f"\nplot: {args.out}")
        else:
            print(
                f"\nno plot: matplotlib is not installed (pip install matplotlib, then rerun for {args.out})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
