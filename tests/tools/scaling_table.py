"""Makes the docs/scaling.md results table with `bert-jax compile --find_max_batch`.

One row per (model, sequence length, topology, parallelism): the largest
global batch that fits and, at that batch, memory per chip, XLA's FLOPs per
chip and the roofline prediction of step time and MFU. Each row is one
`bert-jax compile` process writing `DIR/<row>.json`; a row whose JSON exists
is not compiled again, so the sweep resumes where it stopped.

    python tests/tools/scaling_table.py run [--out=scaling] [--jobs=1] [--only=large-128-v4-8]
    python tests/tools/scaling_table.py run --only=base-128-v4-8-DPxTP --max_compiles=8 --redo  # narrow a bracket
    python tests/tools/scaling_table.py table [--out=scaling]   # markdown on stdout
    python tests/tools/scaling_table.py compare [--out=scaling] # the a100x8 row against NVIDIA's figure
    python tests/tools/scaling_table.py validate [--out=scaling] [--analytic]  # calibrated model vs published
    python tests/tools/scaling_table.py calibrate-doc [--doc=docs/scaling.md]  # calibrated columns in the table

Layers are scanned (`--config.model.scan_layers=True`): XLA compiles one
layer body instead of 12 or 24, and the memory and FLOPs are those of the same
computation. bf16 matmuls (`--config.model.dtype=bfloat16`), float32
parameters and AdamW state, as pretrain runs. `run` also records each row's
CPU seconds in `DIR/<row>.cpu_s`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import pathlib
import resource
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
SIZES = ("large", "base")
SEQS = (128, 512)
# In the order rows are run: the ones docs/scaling.md discusses first.
TOPOLOGIES = ("v4-8", "v5p-64", "h100x8", "v6e-8", "v5e-16", "v5e-256")
# 1 and 8 data-parallel units, where the memory line meets HBM, and one refit
# (through a miss, or to try the next unit up): four compiles a row at most.
MAX_COMPILES = 4
MESHES = {
    "DP": {"data": -1, "fsdp": 1, "tensor": 1},
    "FSDP": {"data": 1, "fsdp": -1, "tensor": 1},
    "DPxTP": {"data": -1, "fsdp": 1, "tensor": 4},
}


def rows() -> list[tuple[str, int, str, str]]:
    """(size, seq, topology, parallelism) in run order."""
    return [(size, seq, topo, par) for topo in TOPOLOGIES for size in SIZES for seq in SEQS for par in MESHES]


def row_name(size: str, seq: int, topo: str, par: str) -> str:
    return f"{size}-{seq}-{topo}-{par}"


def command(
    size: str, seq: int, topo: str, par: str, output: pathlib.Path, max_compiles: int = MAX_COMPILES
) -> list[str]:
    """The `bert-jax compile` command line of one row."""
    mesh = MESHES[par]
    return [
        "bert-jax", "compile", f"--config=configs/bert_{size}.py", f"--topology={topo}", f"--seq_len={seq}",
        "--config.model.dtype=bfloat16", "--config.model.scan_layers=True",
        *(f"--config.mesh.{axis}={n}" for axis, n in mesh.items()),
        "--find_max_batch", f"--max_compiles={max_compiles}", "--json", f"--output={output}",
    ]  # fmt: skip


def _run_row(row, out: pathlib.Path, max_compiles: int = MAX_COMPILES, redo: bool = False) -> str:
    name = row_name(*row)
    target = out / f"{name}.json"
    if target.exists() and not redo:
        return f"{name}: done before"
    # Written beside the row and moved over it on success: a redo that fails
    # or is stopped keeps the row it had.
    partial = out / f"{name}.json.partial"
    start_wall = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command(*row, partial, max_compiles), cwd=REPO, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        (out / f"{name}.err").write_text(proc.stderr)
        return f"{name}: FAILED (exit {proc.returncode}), see {name}.err"
    partial.replace(target)
    (out / f"{name}.cpu_s").write_text(f"{cpu:.0f}\n")
    return f"{name}: {time.time() - start_wall:.0f} s wall, {cpu:.0f} CPU-s"


def _matches(name: str, only: str) -> bool:
    """A whole row name, or a prefix of one ending where a part ends."""
    return name == only or name.startswith(only + "-")


def run(
    out: pathlib.Path, jobs: int, only: list[str], max_compiles: int = MAX_COMPILES, redo: bool = False
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # --only prefixes also set the order.
    todo = [r for o in only for r in rows() if _matches(row_name(*r), o)] if only else rows()
    todo = list(dict.fromkeys(todo))
    # With jobs > 1 the CPU seconds of parallel rows are mixed; use jobs=1 to time rows.
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(lambda r: _run_row(r, out, max_compiles, redo), todo):
            print(line, flush=True)


# The published figure docs/scaling.md compares with: NVIDIA DeepLearningExamples,
# PaddlePaddle BERT-large pre-training phase 1 (seq 128), 8x A100 80GB, mixed
# precision: 5541 sequences/s.
PUBLISHED_SEQ_PER_S = 5541
COMPARISON = [
    "bert-jax", "compile", "--config=configs/bert_large.py", "--topology=a100x8", "--global_batch=2048",
    "--seq_len=128", "--config.model.dtype=bfloat16", "--config.model.scan_layers=True", "--json",
]  # fmt: skip


def compare(out: pathlib.Path) -> str:
    """Compiles the a100x8 row (256 sequences per GPU, as the published run's
    micro-batch) and sets its predicted sequences/s against the published one."""
    target = out / "compare-a100x8.json"
    if not target.exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([*COMPARISON, f"--output={target}"], cwd=REPO, check=True, capture_output=True)
    r = json.loads(target.read_text())
    seq = r["seq_len"]
    roof = r.get("roofline_prediction", r["prediction"])  # older JSONs: the roofline was "prediction"
    roof_seq = r.get("roofline_tokens_per_s", r["predicted_tokens_per_s"]) / seq
    line = (
        f"a100x8 bert_large seq {seq} global batch {r['global_batch']}: {r['status']}; "
        f"ROOFLINE {roof_seq:,.0f} sequences/s (MFU {100 * r.get('roofline_mfu', r['predicted_mfu']):.0f}%, "
        f"step {1e3 * roof['step_s']:.0f} ms: compute {1e3 * roof['compute_s']:.0f}, "
        f"memory {1e3 * roof['memory_s']:.0f}, collectives {1e3 * roof['collective_s']:.0f}); "
        f"published {PUBLISHED_SEQ_PER_S:,}: roofline / published = {roof_seq / PUBLISHED_SEQ_PER_S:.2f}"
    )
    if "roofline_step_s" in r:
        predicted = r["predicted_sequences_per_s"]
        line += (
            f"; CALIBRATED {predicted:,.0f} sequences/s (MFU {100 * r['predicted_mfu']:.0f}%): "
            f"calibrated / published = {predicted / PUBLISHED_SEQ_PER_S:.2f}"
        )
    return line


# --- validate: the calibrated model against published measurements ----------


def validate_command(p, output: pathlib.Path) -> list[str]:
    """`bert-jax compile` of published setting `p` (one optimizer step: every
    chip's micro-batches, the accumulation steps as published)."""
    return [
        "bert-jax", "compile", f"--config=configs/bert_{p.size}.py", f"--topology={p.topology}",
        f"--global_batch={p.global_batch}", f"--seq_len={p.seq_len}",
        f"--config.optimizer.grad_accum_steps={p.accum_steps}",
        "--config.model.dtype=bfloat16", "--config.model.scan_layers=True", "--json", f"--output={output}",
    ]  # fmt: skip


def _validate_row(p, out: pathlib.Path, analytic: bool) -> tuple[float, float, str]:
    """(calibrated, roofline or nan, how) predicted sequences/s of published setting `p`."""
    from bert_jax.compile import calibrated

    if analytic or not p.topology:
        why = "analytic" if p.topology else f"analytic (no compile-only target for {p.chip})"
        return calibrated.predicted_sequences_per_s(p), float("nan"), why
    target = out / f"validate-{p.topology}-{p.seq_len}-{p.micro_batch}x{p.accum_steps}.json"
    if not target.exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(validate_command(p, target), cwd=REPO, check=True, capture_output=True)
    r = json.loads(target.read_text())
    return r["predicted_sequences_per_s"], r["roofline_sequences_per_s"], "compiled"


GOAL = 0.25  # issue 16: every validation point within +-25%


def _validate_rows(points, out: pathlib.Path, analytic: bool, role: str = "") -> tuple[list[str], list[float]]:
    """Markdown rows of `points` against the calibrated prediction, and their errors."""
    lines, errors = [], []
    for p in points:
        predicted, roof, how = _validate_row(p, out, analytic)
        error = predicted / p.sequences_per_s - 1
        roof_text = "-" if roof != roof else f"{roof:,.0f}"  # nan: not compiled
        caveat = f" ({p.caveat})" if p.caveat else ""
        mark = "" if abs(error) <= GOAL else " **outside**"
        lines.append(
            f"| {p.name}{role} | {p.sequences_per_s:,.0f} | {predicted:,.0f} | {100 * error:+.1f}%{mark} "
            f"| {roof_text} | {how} | {p.setting}{caveat} | {p.source} |"
        )
        errors.append(error)
    return lines, errors


def validate(out: pathlib.Path, analytic: bool) -> str:
    """Markdown: the calibration point, each like-for-like published
    measurement against the calibrated prediction (and the roofline where
    compiled), a summary line, then the excluded measurements apart."""
    from bert_jax.compile import calibrated

    header = [
        "| measurement | published seq/s | calibrated seq/s | error | roofline seq/s | how | setting | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cal, _ = _validate_rows([calibrated.CALIBRATION], out, analytic, " (calibration)")
    rows, errors = _validate_rows(calibrated.VALIDATION, out, analytic)
    outside = [p.name for p, e in zip(calibrated.VALIDATION, errors, strict=True) if abs(e) > GOAL]
    summary = (
        f"validation points: {len(errors)}, within +-{100 * GOAL:.0f}%: {len(errors) - len(outside)}, "
        f"outside: {len(outside)}, largest |error| {100 * max(abs(e) for e in errors):.1f}%, "
        f"MATMUL_EFFICIENCY {calibrated.MATMUL_EFFICIENCY}"
    )
    excluded, _ = _validate_rows(calibrated.EXCLUDED, out, analytic)
    sources = [f"* {tag}: {text}" for tag, text in calibrated.SOURCES.items()]
    return "\n".join(
        [*header, *cal, *rows, "", summary, "", "Excluded (not like for like; not counted):", "", *header, *excluded]
        + ["", "Sources:", "", *sources]
    )


def _largest(r: dict, best: int) -> str:
    """`best`, proven (the next unit up did not fit); else "≥ best", with the
    smallest batch that did not fit when the search compiled one ("≥ 8, < 1110")."""
    if r.get("max_batch_proven"):
        return str(best)
    misses = [p["global_batch"] for p in r.get("batch_search", []) if not p["fits"]]
    return f"≥ {best}, < {min(misses)}" if misses else f"≥ {best}"


def _cell_row(r: dict, size: str, seq: int, topo: str, par: str) -> str:
    mesh = r["mesh"]
    mesh_text = f"{mesh['data']}x{mesh['fsdp']}x{mesh['tensor']}"
    best = r.get("max_global_batch", 0)
    if not best:
        return f"| {size} | {seq} | {topo} | {par} {mesh_text} | no | 0 | {r['status']} | | | | | |"
    per_chip = best / r["num_devices"]
    return (
        f"| {size} | {seq} | {topo} | {par} {mesh_text} | yes | {_largest(r, best)} ({per_chip:g}/chip) "
        f"| {r['bytes_per_chip'] / (1 << 30):.1f} / {r['hbm_bytes_per_chip'] / (1 << 30):.1f} "
        f"| {_flops_cell(r)} "
        f"| {_predictions(r, size, seq, topo)} |"
    )


MAX_PREDICTIONS = {128: 20, 512: 80}  # configs/bert_*.py at each length (as `bert-jax compile` sets them)


def calibrated_step(size: str, seq: int, topo: str, mesh: dict, global_batch: int):
    """The calibrated prediction (`bert_jax.compile.calibrated`, its current
    constants) of one table row at `global_batch`, from the analytic counts:
    the same for rows compiled before and after a constant changed."""
    from bert_jax.compile import calibrated, roofline, topologies
    from bert_jax.config import model_config, pretrain_config

    top = topologies.parse_topology(topo)
    par = roofline.Parallelism(mesh["data"], mesh["fsdp"], mesh["tensor"], top.num_slices)
    work = calibrated.analytic_workload(
        model_config(pretrain_config(size)), top.num_devices, top.num_slices, global_batch, seq,
        MAX_PREDICTIONS[seq], 1, parallelism=par,
    )  # fmt: skip
    return calibrated.predict(top.chip, work)


def _predictions(r: dict, size: str, seq: int, topo: str) -> str:
    """Calibrated step ms and MFU (recomputed with today's constants), then
    the roofline's. Rows written before the calibrated model have the
    roofline under the `predicted_*` keys."""
    pred = calibrated_step(size, seq, topo, r["mesh"], r["max_global_batch"])
    roof = floored_roofline(r)
    return f"{pred.step_s * 1e3:.0f} | {100 * pred.mfu:.0f}% | {roof.step_s * 1e3:.0f} | {100 * roof.mfu:.0f}%"


def _flops_cell(r: dict) -> str:
    """TFLOP per chip per step: XLA's count; "(a)" analytic where XLA gave
    none; "(m)" the traced matmuls where XLA's count fell below them."""
    matmuls = r.get("matmul_flops_per_step", 0.0) / r["num_devices"]
    if r["flops_per_step_per_chip"] < matmuls or "floored" in r["flops_source"]:
        return f"{matmuls / 1e12:.2f} (m)"
    return f"{r['flops_per_step_per_chip'] / 1e12:.2f}{'' if r['flops_source'].startswith('xla') else ' (a)'}"


def floored_roofline(r: dict):
    """The row's roofline with its compute term floored at the traced matmuls
    (as `bert-jax compile` now does): rows compiled before the floor, whose
    XLA count on v5p/v6e fell below the matmuls, get the same bound."""
    from bert_jax.compile import roofline, topologies

    chip = topologies.parse_topology(r["topology"]).chip
    flops = max(r["flops_per_step_per_chip"], r.get("matmul_flops_per_step", 0.0) / r["num_devices"])
    comm = roofline.CollectiveBytes(**r["collective_bytes_per_chip"])
    tokens = r["global_batch"] * r["seq_len"]
    return roofline.predict(chip, r["num_devices"], flops, r["hbm_bytes_accessed_per_chip"], comm, tokens,
                            r["analytic_flops_per_step"])


def _doc_row_cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def calibrate_doc(doc: pathlib.Path) -> int:
    """Puts the calibrated prediction beside the roofline in docs/scaling.md's
    results table (two columns before ROOFLINE; recomputed if present), at
    each row's largest global batch as the table gives it (the lower end of a
    bracket). Returns the number of rows written."""
    lines = doc.read_text().splitlines()
    head = next(i for i, x in enumerate(lines) if x.startswith("| model | seq | topology | parallelism"))
    cols = _doc_row_cells(lines[head])
    fresh = "CALIBRATED step ms" not in cols
    at = cols.index("ROOFLINE step ms (bound)") if fresh else cols.index("CALIBRATED step ms")
    if fresh:
        cols[at:at] = ["CALIBRATED step ms", "CALIBRATED MFU"]
    lines[head] = "| " + " | ".join(cols) + " |"
    lines[head + 1] = "|" + "---|" * len(cols)
    n, i = 0, head + 2
    while i < len(lines) and lines[i].startswith("|"):
        cells = _doc_row_cells(lines[i])
        if fresh:
            cells[at:at] = ["", ""]
        size, seq, topo, par = cells[0], int(cells[1]), cells[2], cells[3].split()
        batch = [int(t) for t in cells[5].replace(",", " ").replace("(", " ").split() if t.isdigit()]
        if cells[4] == "yes" and batch:
            d, f, t = (int(x) for x in par[1].split("x"))
            pred = calibrated_step(size, seq, topo, {"data": d, "fsdp": f, "tensor": t}, batch[0])
            cells[at], cells[at + 1] = f"{pred.step_s * 1e3:.0f}", f"{100 * pred.mfu:.0f}%"
        lines[i] = "| " + " | ".join(cells) + " |"
        n, i = n + 1, i + 1
    doc.write_text("\n".join(lines) + "\n")
    return n


def table(out: pathlib.Path) -> str:
    """The markdown table of every finished row, then the missing rows."""
    lines = [
        "| model | seq | topology | parallelism (data x fsdp x tensor) | fits | largest global batch "
        "| GiB/chip at it (of HBM) | TFLOP/step/chip (XLA) | CALIBRATED step ms | CALIBRATED MFU "
        "| ROOFLINE step ms (bound) | ROOFLINE MFU (bound) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    missing = []
    for row in rows():
        path = out / f"{row_name(*row)}.json"
        if path.exists():
            lines.append(_cell_row(json.loads(path.read_text()), *row))
        else:
            missing.append(row_name(*row))
    if missing:
        lines += ["", f"Not computed ({len(missing)} rows): {', '.join(missing)}"]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("run", "table", "compare", "validate", "calibrate-doc"))
    parser.add_argument("--doc", default=REPO / "docs" / "scaling.md", type=pathlib.Path,
                        help="calibrate-doc: the markdown whose results table gets the calibrated columns")
    parser.add_argument("--out", default="scaling", type=pathlib.Path, help="directory of the row JSONs")
    parser.add_argument("--jobs", default=1, type=int, help="rows compiled at once")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="a row name (large-128-v4-8-DP) or a prefix of whole parts (large-128)",
    )
    parser.add_argument(
        "--max_compiles", default=MAX_COMPILES, type=int, help="compiles per row (more narrow a wide bracket)"
    )
    parser.add_argument("--redo", action="store_true", help="compile rows again even where their JSON exists")
    parser.add_argument(
        "--analytic", action="store_true", help="validate: analytic counts only, no compile (seconds, not minutes)"
    )
    args = parser.parse_args(argv)
    if args.what == "run":
        run(args.out, args.jobs, args.only, args.max_compiles, args.redo)
    elif args.what == "compare":
        print(compare(args.out))
    elif args.what == "validate":
        print(validate(args.out, args.analytic))
    elif args.what == "calibrate-doc":
        print(f"{calibrate_doc(args.doc)} rows of {args.doc} with the calibrated prediction")
    else:
        print(table(args.out))


if __name__ == "__main__":
    main(sys.argv[1:])
