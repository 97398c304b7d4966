#!/usr/bin/env bash
# Multi-GPU checks for the 2-GPU machine (issue: distributed backends). Two phases, one device call each:
#   scripts/gpu_multi.sh equiv        fsdp2 vs single on 2 GPUs (AdamW, Nexus; resume 1->2, 2->2, 2->1)
#                                     and DeepSpeed ZeRO-1/2/3 vs single, in fp32 with NCCL
#   scripts/gpu_multi.sh throughput   1B preset, FSDP2 on 1 vs 2 GPUs, AdamW and Nexus: tokens/s per GPU,
#                                     MFU, peak memory and the 1->2 per-GPU efficiency
# Results go to $OUT (default /tmp/gpu_multi). hydra/omegaconf/datasets/deepspeed travel as wheels in .whl.
set -uo pipefail
phase=${1:?usage: scripts/gpu_multi.sh equiv|throughput}
OUT=${OUT:-/tmp/gpu_multi}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 DS_BUILD_OPS=0
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"

if [ "$phase" = equiv ]; then
  NEXUS_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider -x tests/train/test_distributed_trainer.py \
    tests/train/test_deepspeed_backend.py 2>&1 | tail -n 30 | tee "$OUT/equiv.log"
  exit 0
fi

steps=${STEPS:-12}
run() {  # name gpus optim
  local dir="/tmp/tp_$1"
  rm -rf "$dir"
  torchrun --nproc_per_node "$2" --master_port $((29500 + RANDOM % 1000)) -m nexus_pretrain backend=fsdp2 \
    model=llama_1b model.vocab_size=32000 optim="$3" data.seq_len=2048 trainer.micro_batch=4 \
    trainer.global_batch=32 trainer.max_steps="$steps" schedule.warmup_steps=2 schedule.decay_steps=2 \
    trainer.compile=true trainer.log_every=$((steps / 2)) trainer.eval_every=0 trainer.checkpoint_every=0 \
    trainer.export_hf=false logging.progress_bar=false trainer.run_dir="$dir" > "$OUT/$1.log" 2>&1
  tail -n 3 "$OUT/$1.log"
  cp "$dir/metrics.jsonl" "$OUT/$1.metrics.jsonl" 2>/dev/null
}
for optim in adamw nexus; do
  run "${optim}_1gpu" 1 "$optim"
  run "${optim}_2gpu" 2 "$optim"
done
python3 - "$OUT" <<'PY' | tee "$OUT/throughput.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def last(name):  # the second log window: compilation is in the first
    path = out / f"{name}.metrics.jsonl"
    rows = [json.loads(l) for l in path.read_text().splitlines() if '"loss"' in l] if path.exists() else []
    return rows[-1] if rows else None
print("| optimizer | GPUs | tokens/s | tokens/s per GPU | MFU | peak mem (GiB) | per-GPU efficiency 1->2 |")
print("|---|---|---|---|---|---|---|")
for optim in ("adamw", "nexus"):
    one, two = last(f"{optim}_1gpu"), last(f"{optim}_2gpu")
    for gpus, r in ((1, one), (2, two)):
        if r is None:
            print(f"| {optim} | {gpus} | failed | | | | |"); continue
        per = r["tokens_per_s"] / gpus
        eff = f"{per / one['tokens_per_s']:.3f}" if gpus == 2 and one else ""
        print(f"| {optim} | {gpus} | {r['tokens_per_s']:,.0f} | {per:,.0f} | {r.get('mfu', 0):.3f} | "
              f"{r.get('peak_mem_gib', 0):.1f} | {eff} |")
a1, n1 = last("adamw_1gpu"), last("nexus_1gpu")
a2, n2 = last("adamw_2gpu"), last("nexus_2gpu")
for g, a, n in ((1, a1, n1), (2, a2, n2)):
    if a and n:
        print(f"\nNexus/AdamW step time on {g} GPU(s): x{a['tokens_per_s'] / n['tokens_per_s']:.3f}, "
              f"peak memory x{n.get('peak_mem_gib', 0) / max(a.get('peak_mem_gib', 1e-9), 1e-9):.3f}")
PY
