#!/usr/bin/env bash
# nexus-bench runs for one GPU session (issue 9), on the device machine or any CUDA box with this repo.
#   explore: which throughput levers pay (attention kernel, compiled head-loss), HF side by side,
#            profiles, and the 3B preset with activation checkpointing;
#   table:   the README's table: ours vs HF x AdamW vs Nexus at the paper's global batch (256 x 2048),
#            and the 3B preset with activation checkpointing, profiled.
#   check:   the GPU tests (tests/gpu), then the 3B preset with activation checkpointing and profiles at 1B.
# Results (JSON, logs, profiles) go to $OUT/gpu_bench.tgz, refreshed after each run. On the lent machines
# hydra/omegaconf travel as wheels in .whl.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; RES=/tmp/gpu_bench_results; mkdir -p "$OUT" "$RES"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$RES/gpu.txt"
bench() {  # NAME SECONDS ARGS...: one nexus-bench run, its table in NAME.log and results in NAME.json
  local name=$1 limit=$2; shift 2
  echo "=== $name: $*"
  timeout "$limit" python3 -m nexus_pretrain.bench --compile --seq-len 2048 --in-process --json-out "$RES/$name.json" "$@" \
    > "$RES/$name.log" 2>&1
  echo "exit $? after ${SECONDS}s"; grep -v Warning "$RES/$name.log" | grep -A20 "^preset="
  tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
}
case "${1:-table}" in
  explore)
    bench 1b_cudnn 110 --preset llama_1b --micro-batch 8 --accum 4 --profile "$RES/profile"
    bench 1b_sdpa_hf 230 --preset llama_1b --micro-batch 8 --accum 4 --attention sdpa --models ours,hf --optimizers adamw
    bench 130m_cudnn 70 --preset llama_130m --micro-batch 16 --accum 4 --profile "$RES/profile"
    bench 130m_sdpa_eager_head 70 --preset llama_130m --micro-batch 16 --accum 4 --attention sdpa --eager-head --optimizers adamw
    bench 3b_ac 150 --preset llama_3b --micro-batch 4 --accum 2 --activation-checkpointing 1
    ;;
  check)
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests/gpu > "$RES/gpu_tests.log" 2>&1
    echo "gpu tests exit $? after ${SECONDS}s"; tail -n 3 "$RES/gpu_tests.log"
    bench 3b_ac 170 --preset llama_3b --micro-batch 4 --accum 4 --activation-checkpointing 1 --steps 2 --warmup 1
    bench 1b_profile 110 --preset llama_1b --micro-batch 8 --accum 4 --optimizers adamw,nexus,nexus_norm_per_param \
      --steps 2 --warmup 1 --profile "$RES/profile"
    bench 130m_sdpa 60 --preset llama_130m --micro-batch 16 --accum 4 --attention sdpa --optimizers adamw
    bench 130m 150 --preset llama_130m --micro-batch 16 --global-batch 256 --models ours,hf \
      --optimizers adamw,nexus,nexus_norm_per_param --steps 2 --warmup 1
    ;;
  table)
    python3 - <<'PY' 2>&1 | tee "$RES/norm_check.log"  # the side-stream batched norm on CUDA vs after backward
import torch
from nexus_pretrain.optim.grad_norm import BackwardGradNorm
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(8)]).cuda()
for batch in (0, 300_000, 10**9):
    tracker = BackwardGradNorm(list(model.parameters()), batch)
    for _ in range(3):
        model(torch.randn(64, 512, device="cuda")).square().sum().backward()
        got, want = tracker.total(), torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
        tracker.reset()
        model.zero_grad(set_to_none=True)
    tracker.remove()
print("batched gradient norm on CUDA matches get_total_norm")
PY
    # One timed step of 256 sequences each (32 micro-batches at 1B: 8 s); the phase step adds one more.
    one="--global-batch 256 --steps 1 --warmup 1"
    bench 1b_ours 130 --preset llama_1b --micro-batch 8 $one --optimizers adamw,nexus,nexus_norm_per_param
    bench 1b_hf 170 --preset llama_1b --micro-batch 8 $one --models hf
    bench 130m 110 --preset llama_130m --micro-batch 16 $one --models ours,hf
    bench 3b_ac 110 --preset llama_3b --micro-batch 4 --accum 4 --activation-checkpointing 1 --steps 2 --warmup 1 \
      --profile "$RES/profile"
    bench 520m 140 --preset llama_520m --micro-batch 8 $one --models ours,hf
    ;;
  *) echo "usage: $0 explore|check|table"; exit 2 ;;
esac
