#!/usr/bin/env bash
# Multi-GPU checks for the 2-GPU machine (issue: distributed backends). Three phases, one device call each:
#   scripts/gpu_multi.sh backends     single, fsdp2 and DeepSpeed ZeRO-1/2/3 at 130M, bf16, on all local GPUs
#   scripts/gpu_multi.sh equiv        fsdp2 vs single on 2 GPUs (AdamW, Nexus; resume 1->2, 2->2, 2->1)
#                                     and DeepSpeed ZeRO-1/2/3 vs single, in fp32 with NCCL
#   scripts/gpu_multi.sh throughput   1B preset, AdamW and Nexus: single backend, FSDP2 on 1 GPU and (when
#                                     the machine has two) on 2 GPUs: tokens/s per GPU, MFU, peak memory
#                                     and the per-GPU efficiency
# Results go to $OUT (default /tmp/gpu_multi). hydra/omegaconf/datasets/deepspeed travel as wheels in .whl.
set -uo pipefail
phase=${1:?usage: scripts/gpu_multi.sh equiv|throughput}
OUT=${OUT:-/tmp/gpu_multi}; mkdir -p "$OUT"
source scripts/gpu_env.sh
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 DS_BUILD_OPS=0
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"

if [ "$phase" = equiv ]; then
  NEXUS_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider -x tests/train/test_distributed_trainer.py \
    tests/train/test_deepspeed_backend.py 2>&1 | tail -n 30 | tee "$OUT/equiv.log"
  exit 0
fi

if [ "$phase" = backends ]; then
  # Every backend on this machine's GPUs with the 130M preset, bf16: losses side by side, tokens/s, memory.
  gpus_here=$(nvidia-smi -L | wc -l)
  for optim in adamw nexus; do
    for backend in single fsdp2 deepspeed:1 deepspeed:2 deepspeed:3; do
      name="${optim}_${backend/:/_zero}"; dir="/tmp/bk_$name"; rm -rf "$dir"
      extra=(); [[ "$backend" == deepspeed:* ]] && extra=(backend=deepspeed backend.zero_stage="${backend#*:}")
      [[ "$backend" == deepspeed:* ]] || extra=(backend="$backend")
      n=$gpus_here; [ "$backend" = single ] && n=1
      torchrun --nproc_per_node "$n" --master_port $((29500 + RANDOM % 1000)) -m nexus_pretrain \
        "${extra[@]}" model=llama_130m optim="$optim" data.seq_len=1024 trainer.micro_batch=16 \
        trainer.global_batch=$((64 * n)) trainer.max_steps=10 schedule.warmup_steps=2 schedule.decay_steps=2 \
        trainer.log_every=5 trainer.eval_every=0 trainer.checkpoint_every=10 trainer.export_hf=false \
        logging.progress_bar=false trainer.run_dir="$dir" > "$OUT/$name.log" 2>&1
      echo "$name rc=$? $(tail -n 1 "$OUT/$name.log")"
      python3 -c "import json,sys; r=[json.loads(l) for l in open('$dir/metrics.jsonl') if '\"loss\"' in l]; \
print('   ', ' '.join(f\"step {x['step']}: loss {x['loss']:.4f} tok/s {x['tokens_per_s']:,.0f} mem {x.get('peak_mem_gib',0):.1f}GiB\" for x in r))" 2>/dev/null
    done
  done 2>&1 | tee "$OUT/backends.log"
  exit 0
fi

steps=${STEPS:-12}
gpus_here=$(nvidia-smi -L | wc -l)
run() {  # name gpus optim backend
  local dir="/tmp/tp_$1"
  rm -rf "$dir"
  torchrun --nproc_per_node "$2" --master_port $((29500 + RANDOM % 1000)) -m nexus_pretrain backend="$4" \
    model=llama_1b model.vocab_size=32000 optim="$3" data.seq_len=2048 trainer.micro_batch=4 \
    trainer.global_batch=32 trainer.max_steps="$steps" schedule.warmup_steps=2 schedule.decay_steps=2 \
    trainer.compile=true trainer.log_every=$((steps / 2)) trainer.eval_every=0 trainer.checkpoint_every=0 \
    trainer.export_hf=false logging.progress_bar=false trainer.run_dir="$dir" > "$OUT/$1.log" 2>&1
  tail -n 3 "$OUT/$1.log"
  cp "$dir/metrics.jsonl" "$OUT/$1.metrics.jsonl" 2>/dev/null
}
for optim in adamw nexus; do
  [ "${SINGLE:-1}" = 1 ] && run "${optim}_single" 1 "$optim" single
  run "${optim}_1gpu" 1 "$optim" fsdp2
  [ "$gpus_here" -ge 2 ] && run "${optim}_2gpu" 2 "$optim" fsdp2
done
python3 - "$OUT" <<'PY' | tee "$OUT/throughput.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def last(name):  # the second log window: compilation is in the first
    path = out / f"{name}.metrics.jsonl"
    rows = [json.loads(l) for l in path.read_text().splitlines() if '"loss"' in l] if path.exists() else []
    return rows[-1] if rows else None
print("| optimizer | backend | GPUs | tokens/s | tokens/s per GPU | MFU | peak mem (GiB) | per-GPU efficiency vs fsdp2 1 GPU |")
print("|---|---|---|---|---|---|---|---|")
for optim in ("adamw", "nexus"):
    one = last(f"{optim}_1gpu")
    for name, backend, gpus in (("single", "single", 1), ("1gpu", "fsdp2", 1), ("2gpu", "fsdp2", 2)):
        r = last(f"{optim}_{name}")
        if r is None:
            print(f"| {optim} | {backend} | {gpus} | not run or failed | | | | |"); continue
        per = r["tokens_per_s"] / gpus
        eff = f"{per / one['tokens_per_s']:.3f}" if one else ""
        print(f"| {optim} | {backend} | {gpus} | {r['tokens_per_s']:,.0f} | {per:,.0f} | {r.get('mfu', 0):.3f} | "
              f"{r.get('peak_mem_gib', 0):.1f} | {eff} |")
for name in ("single", "1gpu", "2gpu"):
    a, n = last(f"adamw_{name}"), last(f"nexus_{name}")
    if a and n:
        print(f"\nNexus/AdamW step time ({name}): x{a['tokens_per_s'] / n['tokens_per_s']:.3f}, "
              f"peak memory x{n.get('peak_mem_gib', 0) / max(a.get('peak_mem_gib', 1e-9), 1e-9):.3f}")
PY
