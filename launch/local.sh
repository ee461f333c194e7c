#!/usr/bin/env bash
# One machine, all its devices (CPU, or every local GPU): the default mesh
# (mesh.data=-1) is pure data parallelism over them.
#   launch/local.sh configs/demo.py /tmp/bert-demo [--config.total_steps=40 ...]
set -euo pipefail
CONFIG=${1:?usage: local.sh CONFIG WORKDIR [--config.X=Y ...]}
WORKDIR=${2:?usage: local.sh CONFIG WORKDIR [--config.X=Y ...]}
shift 2
# XLA:CPU allocates each step's temporaries afresh; glibc hands large blocks
# out as new 4 KiB pages, so a bert_base batch-8 step takes ~420k page faults.
# Huge pages for those blocks make the step ~7% faster (docs/performance.md).
# glibc < 2.35 ignores the setting; an allocator you chose is left alone.
if [[ -z "${GLIBC_TUNABLES:-}" && -z "${LD_PRELOAD:-}" ]]; then
  export GLIBC_TUNABLES=glibc.malloc.hugetlb=1
fi
exec bert-jax pretrain --config="$CONFIG" --workdir="$WORKDIR" "$@"
