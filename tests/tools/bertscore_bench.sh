#!/bin/bash
# BERTScore speed, whole processes alternating: bert-jax score against
# bert-score 0.3.13 on the same pairs (docs/performance.md). Run in a folder
# holding cands.txt and refs.txt (one sentence a line, as many lines each):
#   bash tests/tools/bertscore_bench.sh MODEL_FOLDER
set -euo pipefail
M=$1
TOOLS=$(cd "$(dirname "$0")" && pwd)
echo "load before: $(cat /proc/loadavg)"
for i in 1 2 3; do
  /usr/bin/time -f "bert-jax %e s" bert-jax score --checkpoint="$M" --candidates=cands.txt --references=refs.txt \
    --batch_size=64 > ours.jsonl 2> ours.err; tail -1 ours.err
  /usr/bin/time -f "bert-score %e s" python "$TOOLS/bertscore_ref.py" "$M" 2> ref.err; grep -E "^bert-score |score\(\)" ref.err
done
rm -rf jaxcache
for i in 1 2 3; do
  JAX_COMPILATION_CACHE_DIR=jaxcache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 /usr/bin/time -f "bert-jax, cache run $i: %e s" \
    bert-jax score --checkpoint="$M" --candidates=cands.txt --references=refs.txt --batch_size=64 > ours_cached.jsonl 2> ours.err
  tail -1 ours.err
done
cmp ours.jsonl ours_cached.jsonl && echo "cached run: same bytes"
python - <<'PY'
import json
ours = [json.loads(line) for line in open("ours.jsonl")][:-1]
ref = [line.split() for line in open("ref_out.txt")]
diff = max(abs(o[k] - float(r[i])) for o, r in zip(ours, ref) for i, k in enumerate(("precision", "recall", "f1")))
print("pairs", len(ours), "max |difference| from bert-score", diff)
PY
echo "load after: $(cat /proc/loadavg)"
