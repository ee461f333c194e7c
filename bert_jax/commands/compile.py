"""`bert-jax compile`: pretrain's step compiled ahead of time for a TPU or GPU
topology this machine does not have; memory per chip against HBM, FLOPs and a
roofline prediction of step time and MFU.

    bert-jax compile --config=configs/bert_large.py --topology=v5p-64 \\
        --global_batch=1024 --seq_len=512 [--json] [--output=report.json]
        [--find_max_batch | --compare_parallelism] [--config.mesh.fsdp=-1 ...]
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib

# Only compiles for a target: never run on (or wait for) a local accelerator.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bert_jax import atomic  # noqa: E402
from bert_jax.commands import common  # noqa: E402
from bert_jax.compile import topologies  # noqa: E402
from bert_jax.errors import UserError  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "pre-training config file (configs/*.py)")
_TOPOLOGY = flags.DEFINE_string("topology", None, f"target, e.g. {topologies.EXAMPLES}")
_GLOBAL_BATCH = flags.DEFINE_integer("global_batch", 0, "global batch (0: the config's batch_size)")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 0, "sequence length (0: the config's data.max_seq_length)")
_JSON = flags.DEFINE_bool("json", False, "print one JSON object on stdout instead of the table")
_OUTPUT = flags.DEFINE_string("output", "", "also write the JSON report to this file")
_FIND_MAX = flags.DEFINE_bool(
    "find_max_batch", False, "find the largest global batch that fits (linear fit of memory in the batch, verified by compiling)"
)
_MAX_COMPILES = flags.DEFINE_integer(
    "max_compiles", 6, "--find_max_batch compiles at most this many batches (then: the largest verified to fit)"
)
_COMPARE = flags.DEFINE_bool(
    "compare_parallelism", False, "compile DP, FSDP and DP x TP (tensor=4) and show them side by side"
)


def _cpu_devices_for(topology: topologies.Topology) -> None:
    """GPU FLOPs are counted on as many CPU devices; ask for them before JAX
    starts its CPU backend (too late if something already started it)."""
    import jax

    if topology.platform == "cuda":
        # Backends already up: aot falls back to the analytic count, and says so.
        with contextlib.suppress(RuntimeError):
            jax.config.update("jax_num_cpu_devices", topology.num_devices)


def _write_json(path: str, payload: dict) -> None:
    """Write via a temporary name then rename: never a half-written report."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(target, json.dumps(payload, indent=2))


def main(argv):
    common.no_positional_args(argv, "every option is a --flag")
    common.require_flags("config", example="--config=configs/bert_large.py")
    common.require_flags("topology", example=f"one of {topologies.EXAMPLES}")
    if _FIND_MAX.value and _COMPARE.value:
        raise UserError("--find_max_batch and --compare_parallelism are separate runs; pick one")
    topology = topologies.parse_topology(_TOPOLOGY.value)
    topologies.check_runtime(topology.platform)
    _cpu_devices_for(topology)

    from bert_jax.compile import aot, table  # imports jax, flax and the train step

    config = aot.resolve(_CONFIG.value, _GLOBAL_BATCH.value, _SEQ_LEN.value)
    aot.batch_unit(config, topology.num_devices)  # a bad mesh fails before compiling
    if _COMPARE.value:
        reports = aot.compare_parallelism(config, topology)
        payload = {"topology": topology.name, "parallelisms": reports}
    elif _FIND_MAX.value:
        best, report = aot.find_max_batch(config, topology, max_compiles=_MAX_COMPILES.value)
        if report is None:  # not even one example per data-parallel rank: show that compile
            unit = aot.batch_unit(config, topology.num_devices)
            report = aot.compile_for_topology(aot.resolve(config, global_batch=unit), topology)
        payload = {**report, "max_global_batch": best, "max_batch_per_chip": best / topology.num_devices}
        reports = {f"largest batch: {best}": report}
    else:
        payload = aot.compile_for_topology(config, topology)
        reports = {topology.name: payload}

    if _OUTPUT.value:
        _write_json(_OUTPUT.value, payload)
    if _JSON.value:
        print(json.dumps(payload))
    else:
        print(table.format_table(reports))
