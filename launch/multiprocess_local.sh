#!/usr/bin/env bash
# N processes on this machine, each with D simulated CPU devices, talking over
# gloo: the multi-host code path without a cluster (tests/test_multiprocess.py
# runs the same). Process 0 writes the logs; all write their checkpoint shards.
#   launch/multiprocess_local.sh 2 2 configs/demo.py /tmp/bert-mp [--config.X=Y ...]
set -euo pipefail
N=${1:?usage: multiprocess_local.sh NUM_PROCESSES DEVICES_PER_PROCESS CONFIG WORKDIR [flags]}
D=${2:?}
CONFIG=${3:?}
WORKDIR=${4:?}
shift 4
PORT=${PORT:-$((20000 + RANDOM % 20000))}
pids=()
for ((i = 0; i < N; i++)); do
  JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=$D" \
    bert-jax pretrain --config="$CONFIG" --workdir="$WORKDIR" \
      --coordinator_address="localhost:$PORT" --num_processes="$N" --process_id="$i" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
