"""Training metrics to WORKDIR/metrics.jsonl, TensorBoard (WORKDIR/tb/) and
a console progress line. Only process 0 writes.

metrics.jsonl holds one JSON object per logged step (at least "step" and
"loss"; "split": "eval" for evaluations). It is only ever appended to: after
a crash (not a SIGTERM, which saves first) the steps between the last
checkpoint and the crash appear twice; the later line of a step is the one
of the run that continued.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricsLog:
    def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._writer = None
        if enabled and tensorboard:
            import tensorflow as tf  # TensorBoard event files; the loop layer may use TF

            self._tf = tf
            # tf.summary.scalar needs the tensorboard package; the raw write
            # with the "scalars" plugin tag makes the same event.
            self._scalar_metadata = tf.compat.v1.SummaryMetadata(
                plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
            ).SerializeToString()
            self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tb"))

    def write(self, step: int, metrics: dict[str, Any], split: str = "train") -> None:
        """Appends one record and writes each scalar to TensorBoard as `split/name`."""
        if not self.enabled:
            return
        record = {"step": int(step), **({"split": split} if split != "train" else {})}
        record.update({k: _jsonable(v) for k, v in metrics.items()})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.write_tensorboard_only(step, metrics, split)

    def write_tensorboard_only(self, step: int, metrics: dict[str, Any], split: str = "train") -> None:
        if self.enabled and self._writer is not None:
            with self._writer.as_default(step=int(step)):
                for k, v in metrics.items():
                    if isinstance(v, int | float) and math.isfinite(v):
                        self._tf.summary.write(
                            f"{split}/{k}",
                            self._tf.constant(v, self._tf.float32),
                            metadata=self._scalar_metadata,
                        )
            self._writer.flush()

    def progress(
        self, step: int, total: int, metrics: dict[str, Any], started: float, start_step: int
    ) -> None:
        """`step 120/600 loss 6.1234 mlm_acc 0.081 | 512 ex/s 32768 tok/s | ETA 1m40s`."""
        if not self.enabled:
            return
        done = step - start_step  # steps timed since `started` (the loop starts after the first, compiled step)
        rate = done / max(time.monotonic() - started, 1e-9)
        parts = [f"step {step}/{total}", f"loss {metrics['loss']:.4f}"]
        if "mlm_accuracy" in metrics:
            parts.append(f"mlm_acc {metrics['mlm_accuracy']:.3f}")
        line = " ".join(parts)
        if "examples_per_s" in metrics:
            line += f" | {metrics['examples_per_s']:.0f} ex/s {metrics['tokens_per_s']:.0f} tok/s"
        if "real_tokens_per_s" in metrics:
            line += f" ({metrics['real_tokens_per_s']:.0f} real)"
        if "mfu" in metrics:
            line += f" MFU {100 * metrics['mfu']:.1f}%"
        if done > 0:  # no rate yet: the first step's time is mostly compilation
            line += f" | ETA {_fmt_duration((total - step) / rate)}"
        print(line, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf
    return v


def read_metrics(workdir: str, split: str = "train") -> dict[int, dict[str, Any]]:
    """{step: record} of metrics.jsonl, the later record winning for a step."""
    out: dict[int, dict[str, Any]] = {}
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("split", "train") == split:
                out[record["step"]] = record
    return out
