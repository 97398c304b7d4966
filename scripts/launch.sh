#!/usr/bin/env bash
# Launch nexus-train on one node or many, with torchrun (default) or the deepspeed launcher.
#
#   scripts/launch.sh [--gpus G] [--nodes N --node-rank R --master HOST[:PORT]] [--deepspeed] [overrides...]
#
#   scripts/launch.sh --gpus 8 backend=fsdp2 model=llama_1b optim=nexus
#   # two nodes: run on each, with the same RUN_ID and the first node as master
#   RUN_ID=llama1b_nexus scripts/launch.sh --nodes 2 --node-rank $R --master node01:29500 --gpus 8 backend=fsdp2 ...
#   scripts/launch.sh --deepspeed --gpus 8 backend=deepspeed backend.zero_stage=2 model=llama_1b
#
# Every rank must write to the same run directory: unless trainer.run_dir is given, it is
# runs/$RUN_ID (RUN_ID defaults to a timestamp, and must be set explicitly for multi-node runs).
set -euo pipefail

gpus=$( (command -v nvidia-smi >/dev/null && nvidia-smi -L | wc -l) || echo 1)
nodes=1 node_rank=0 master="127.0.0.1:29500" launcher=torchrun
overrides=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gpus) gpus="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --node-rank) node_rank="$2"; shift 2 ;;
    --master) master="$2"; shift 2 ;;
    --deepspeed) launcher=deepspeed; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) overrides+=("$1"); shift ;;
  esac
done
[[ "$master" == *:* ]] || master="$master:29500"

if ! printf '%s\n' "${overrides[@]:-}" | grep -q '^trainer.run_dir='; then
  if [[ "$nodes" -gt 1 && -z "${RUN_ID:-}" ]]; then
    echo "error: set RUN_ID (the same on every node) or trainer.run_dir=... for a multi-node run" >&2
    exit 2
  fi
  overrides+=("trainer.run_dir=runs/${RUN_ID:-$(date +%Y-%m-%d_%H-%M-%S)}")
fi

if [[ "$launcher" == torchrun ]]; then
  exec torchrun --nnodes "$nodes" --nproc_per_node "$gpus" --node_rank "$node_rank" \
    --rdzv_backend c10d --rdzv_endpoint "$master" --rdzv_id "${RUN_ID:-nexus}" \
    -m nexus_pretrain "${overrides[@]}"
else
  # --no_local_rank: ranks come from the environment, so Hydra never sees a --local_rank argument.
  exec deepspeed --num_nodes "$nodes" --num_gpus "$gpus" --master_addr "${master%:*}" \
    --master_port "${master#*:}" --no_local_rank --module nexus_pretrain "${overrides[@]}"
fi
