"""Compile reports (the dicts `bert_jax.compile.aot` returns) as a text table,
one column per report, for `bert-jax compile`."""

from __future__ import annotations

from bert_jax.compile.topologies import GIB


def _gib(n) -> str:
    return "-" if n is None else f"{n / GIB:.2f} GiB"


def _mesh(r: dict) -> str:
    m = r["mesh"]
    return f"data {m['data']} x fsdp {m['fsdp']} x tensor {m['tensor']}"


def _pred(r: dict, key: str, fmt) -> str:
    value = r.get(key)
    return "-" if value is None else fmt(value)


def _fused(calls: dict | None) -> str:
    if calls is None:
        return "-"  # not compiled (did not fit)
    return ", ".join(f"{name} x{n}" for name, n in calls.items()) or "none (XLA's attention)"


ROWS = [
    ("topology", lambda r: f"{r['topology']} ({r['num_devices']} x {r['chip']})"),
    ("mesh", _mesh),
    ("global batch x seq", lambda r: f"{r['global_batch']} x {r['seq_len']}"),
    ("params / chip", lambda r: _gib(r["arguments_per_chip"]["params"])),
    ("optimizer state / chip", lambda r: _gib(r["arguments_per_chip"]["opt_state"])),
    ("batch / chip", lambda r: _gib(r["arguments_per_chip"]["batch"])),
    ("arguments / chip", lambda r: _gib(r.get("memory_per_chip", {}).get("arguments"))),
    ("outputs / chip", lambda r: _gib(r.get("memory_per_chip", {}).get("outputs"))),
    ("temporaries / chip", lambda r: _gib(r.get("memory_per_chip", {}).get("temporaries"))),
    ("aliased (donated) / chip", lambda r: _gib(r.get("memory_per_chip", {}).get("aliased"))),
    ("total / chip vs HBM", lambda r: f"{_gib(r.get('bytes_per_chip'))} of {_gib(r['hbm_bytes_per_chip'])}"),
    ("memory", lambda r: r["status"]),
    ("fused attention calls", lambda r: _fused(r.get("fused_attention_calls"))),
    ("FLOPs / step / chip", lambda r: _pred(r, "flops_per_step_per_chip", lambda v: f"{v / 1e12:.3f} TFLOP")),
    ("FLOPs counted by", lambda r: r.get("flops_source", "-")),
    ("PREDICTED step time", lambda r: _pred(r, "predicted_step_s", lambda v: f"{v * 1e3:.2f} ms")),
    ("PREDICTED sequences/s", lambda r: _pred(r, "predicted_sequences_per_s", lambda v: f"{v:,.0f}")),
    ("PREDICTED tokens/s", lambda r: _pred(r, "predicted_tokens_per_s", lambda v: f"{v:,.0f}")),
    ("PREDICTED MFU", lambda r: _pred(r, "predicted_mfu", lambda v: f"{100 * v:.1f}%")),
    ("roofline step time (bound)", lambda r: _pred(r, "roofline_step_s", lambda v: f"{v * 1e3:.2f} ms")),
    ("roofline MFU (bound)", lambda r: _pred(r, "roofline_mfu", lambda v: f"{100 * v:.1f}%")),
]

FOOTNOTE = (
    "PREDICTED = calibrated model (docs/scaling.md, 'Calibrated prediction'): matmuls at a fraction of "
    "peak fitted to one published measurement + memory-bound elementwise and optimizer work + collectives; "
    "not a measurement.\nroofline = max(FLOPs/peak, HBM bytes/bandwidth) + collectives from published "
    "chip peaks: an upper bound on throughput."
)


def format_table(reports: dict[str, dict]) -> str:
    """`{column title: report}` as an aligned text table with the footnote."""
    titles = list(reports)
    cells = [[name] + [fn(reports[t]) for t in titles] for name, fn in ROWS]
    header = [""] + titles
    widths = [max(len(str(row[i])) for row in [header] + cells) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header] + cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + ["", FOOTNOTE])
