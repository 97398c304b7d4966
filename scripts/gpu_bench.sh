#!/usr/bin/env bash
# nexus-bench runs for one GPU session (issue 9), on the device machine or any CUDA box with this repo.
#   levers: which throughput levers pay: compiled Nexus inner step, bf16 residual stream, micro-batch,
#           what holds Nexus's extra memory (memory census), profiles at 130M and 1B;
#   table:  the README's table: ours vs HF x AdamW vs Nexus at the paper's global batch (256 x 2048),
#           the 3B preset with activation checkpointing, profiled, and the attention-projection layouts;
#   confirm: 1B over three steps, and with the bf16 residual stream;
#   larger:  1B with 16-sequence micro-batches (bf16 residual stream), 3B at the paper's global batch;
#            "larger 1b" stops after the 1B run.
# Results (JSON, logs, profiles) go to $OUT/gpu_bench.tgz, refreshed after each run. On the lent machines
# hydra/omegaconf travel as wheels in .whl.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; RES=/tmp/gpu_bench_results; mkdir -p "$OUT" "$RES"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
# What nexus-train and nexus-bench default to (cli.default_cuda_allocator); python -m imports torch first.
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
clocks() { nvidia-smi --query-gpu=name,memory.total,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active \
  --format=csv,noheader | tee -a "$RES/gpu.txt"; }  # before and after: a throttled GPU shows here
clocks
bench() {  # NAME SECONDS ARGS...: one nexus-bench run, its table in NAME.log and results in NAME.json
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*"
  timeout "$limit" python3 -m nexus_pretrain.bench --compile --seq-len 2048 --in-process --json-out "$RES/$name.json" "$@" \
    > "$RES/$name.log" 2>&1
  echo "exit $? after ${SECONDS}s"; grep -v Warning "$RES/$name.log" | grep -A20 "^preset="
  tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
}
case "${1:-table}" in
  levers)
    bench 1b_census 120 --preset llama_1b --micro-batch 8 --accum 8 --steps 3 --warmup 1 --optimizers adamw,nexus \
      --memory-census blocks --profile "$RES/profile"
    grep "memory census" "$RES/1b_census.log"
    bench 1b_step 150 --preset llama_1b --micro-batch 8 --accum 8 --steps 3 --warmup 1 \
      --optimizers adamw,nexus,nexus_eager_step
    bench 1b_bf16res 80 --preset llama_1b --micro-batch 8 --accum 8 --steps 3 --warmup 1 --optimizers adamw \
      --residual-dtype bfloat16
    bench 130m 60 --preset llama_130m --micro-batch 16 --accum 8 --steps 3 --warmup 1 --optimizers adamw --profile "$RES/profile"
    bench 130m_mb32_bf16res 60 --preset llama_130m --micro-batch 32 --accum 4 --steps 3 --warmup 1 --optimizers adamw \
      --residual-dtype bfloat16
    bench 130m_flash 50 --preset llama_130m --micro-batch 16 --accum 8 --steps 3 --warmup 1 --optimizers adamw --sdpa-backend flash
    ;;
  table)
    # One timed step of 256 sequences each (32 micro-batches at 1B: 8 s); the phase step adds one more.
    one="--global-batch 256 --steps 1 --warmup 1"
    bench 1b_ours 130 --preset llama_1b --micro-batch 8 $one --memory-census blocks
    grep "memory census" "$RES/1b_ours.log"
    bench 3b_ac 150 --preset llama_3b --micro-batch 4 --accum 4 --activation-checkpointing 1 --steps 2 --warmup 1 \
      --profile "$RES/profile"
    bench 130m 120 --preset llama_130m --micro-batch 32 $one --models ours,hf
    bench 520m 80 --preset llama_520m --micro-batch 8 $one
    timeout 60 python3 scripts/bench_attention_layout.py 2>&1 | grep -v Warning | tee "$RES/attention_layout.log"
    clocks
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  confirm)  # 1B Nexus/AdamW over three steps of 256 sequences (one step is noisy at 1%), bf16 residual stream
    bench 1b_steps3 200 --preset llama_1b --micro-batch 8 --global-batch 256 --steps 3 --warmup 1
    bench 1b_bf16res 150 --preset llama_1b --micro-batch 8 --global-batch 256 --steps 1 --warmup 1 --residual-dtype bfloat16
    clocks
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  larger)  # 1B with 16 sequences per micro-batch (fits with the bf16 residual stream), 3B at the paper's batch
    bench 1b_mb16_bf16res 150 --preset llama_1b --micro-batch 16 --global-batch 256 --steps 1 --warmup 1 \
      --residual-dtype bfloat16
    [ "${2:-}" = 1b ] && { clocks; exit 0; }
    bench 3b_ac_256 185 --preset llama_3b --micro-batch 4 --global-batch 256 --activation-checkpointing 1 --steps 1 --warmup 1
    clocks
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  *) echo "usage: $0 levers|table|confirm|larger"; exit 2 ;;
esac
