#!/usr/bin/env bash
# A Cloud TPU VM pod slice: the same command on every worker; jax finds the
# other workers by itself (jax.distributed.initialize auto-detects TPU VMs).
# Data and workdir must be on GCS, readable/writable by every worker.
#   TPU=my-v4-32 ZONE=us-central2-b launch/tpu_pod.sh configs/bert_base.py gs://BUCKET/runs/base \
#       --config.data.train_files=gs://BUCKET/data/seq128/*.tfrecord --config.mesh.fsdp=-1 --config.mesh.data=1
# One-time setup on every worker:
#   gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
#     --command='pip install "jax[tpu]==0.10.2" && git clone REPO bert-jax && pip install -e bert-jax'
set -euo pipefail
CONFIG=${1:?usage: tpu_pod.sh CONFIG gs://WORKDIR [--config.X=Y ...]}
WORKDIR=${2:?}
shift 2
: "${TPU:?set TPU to the TPU VM name}" "${ZONE:?set ZONE}"
EXTRA=$(printf ' %q' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
  --command="cd bert-jax && bert-jax pretrain --config=$CONFIG --workdir=$WORKDIR$EXTRA"
