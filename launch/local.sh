#!/usr/bin/env bash
# One machine, all its devices (CPU, or every local GPU): the default mesh
# (mesh.data=-1) is pure data parallelism over them.
#   launch/local.sh configs/demo.py /tmp/bert-demo [--config.total_steps=40 ...]
set -euo pipefail
CONFIG=${1:?usage: local.sh CONFIG WORKDIR [--config.X=Y ...]}
WORKDIR=${2:?usage: local.sh CONFIG WORKDIR [--config.X=Y ...]}
shift 2
exec bert-jax pretrain --config="$CONFIG" --workdir="$WORKDIR" "$@"
