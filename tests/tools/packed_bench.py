"""Real tokens/s of pretrain's own step on one real batch from shards: padded (nsp) against packed
(docs/performance.md, "Packed rows"). Not a test.

STEPS=15 python tests/tools/packed_bench.py SHARDS_DIR MODE SEQ BATCH VOCAB
MODE: nsp | packed (the shards' create-data mode). modernbert_tiny, vocab 8000. Prints one JSON line.
"""
import json
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

from bert_jax import bench
from bert_jax.config import family_config, model_config, resolve_config
from bert_jax.train import phases, sharding

shards, mode, seq, batch, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
config = family_config("modernbert", "tiny")
config.model.max_position_embeddings = max(seq, config.model.max_position_embeddings)
config, _ = resolve_config(config, batch, seq)
config.data.train_files = shards
config.data.vocab_file = vocab
config.data.mode = mode
config.data.masking = "dynamic"
config.model.vocab_size = 8000
model_cfg = model_config(config)
phase = phases.resolve_phases(config)[0]
mesh = sharding.make_mesh(config.mesh)
spec = phases.source_spec(batch, sharding.batch_sharding(mesh), phase)
source = phases.default_source_factory(config, tempfile.mkdtemp(), model_cfg)(spec, "train", shards, None)
host_batch = next(source)
real = float(np.asarray(host_batch["input_mask"]).mean())
runner = bench.build_ours(config, host_batch)
for _ in range(2):
    jax.block_until_ready(runner.advance())
times = []
for _ in range(int(__import__("os").environ.get("STEPS", "9"))):
    t0 = time.perf_counter()
    jax.block_until_ready(runner.advance())
    times.append(time.perf_counter() - t0)
step_s = statistics.median(times)
print(json.dumps({"mode": mode, "seq": seq, "batch": batch, "step_s": round(step_s, 4),
                  "times": [round(t, 4) for t in times], "batch_real_fraction": round(real, 4),
                  "batch_real_tokens_per_s": round(real * batch * seq / step_s, 1),
                  "tokens_per_s": round(batch * seq / step_s, 1)}))
