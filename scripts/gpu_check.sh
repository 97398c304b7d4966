#!/usr/bin/env bash
# GPU checks on one CUDA machine with this repository:
# GPU tests, the isolated inner-step cost, nexus-bench at 130M and 1B, and a short real training run.
# On a machine without a package index, put hydra/omegaconf wheels in .whl first.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
source scripts/gpu_env.sh
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tail -n 15 | tee "$OUT/gpu_tests.log"
python3 scripts/bench_inner_step.py --preset llama_1b 2>&1 | tee "$OUT/inner_step.log"
bench() { python3 -c "from nexus_pretrain.bench import main; main()" "$@"; }
bench --preset llama_130m --seq-len 1024 --micro-batch 16 --accum 4 --compile --steps 8 --warmup 3 \
  --optimizers adamw,nexus,nexus_offload,muon,nexus_muon 2>&1 | tee "$OUT/bench_130m.log"
bench --preset llama_1b --seq-len 2048 --micro-batch 4 --accum 4 --compile --steps 6 --warmup 3 \
  --optimizers adamw,nexus,nexus_offload 2>&1 | tee "$OUT/bench_1b.log"
python3 -c "from nexus_pretrain.cli import train; train()" model=llama_130m optim=nexus data.seq_len=1024 \
  trainer.global_batch=64 trainer.micro_batch=16 trainer.max_steps=60 schedule.warmup_steps=10 \
  schedule.decay_steps=20 trainer.compile=true trainer.log_every=10 trainer.eval_every=30 \
  trainer.checkpoint_every=0 trainer.export_hf=false logging.progress_bar=false \
  trainer.run_dir=/tmp/gpu_run 2>&1 | tail -n 5 | tee "$OUT/train_130m.log"
cp /tmp/gpu_run/metrics.jsonl "$OUT/train_130m_metrics.jsonl" 2>/dev/null
