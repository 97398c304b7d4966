#!/usr/bin/env bash
# nexus-bench measurements on one CUDA machine with this repository, one mode per call:
#   residual: the bf16 residual stream for both models at 130M and 1B, micro-batch, SDPA flash vs cuDNN;
#   defaults: the README table with today's defaults ("defaults 1b": 1B and the trainer's own
#            tokens/s; "defaults small": 130M, 520M, 3B; "defaults table": 1B, 130M, 520M);
#   hf1b:    HF's 1B with its own fp32 residual stream and with the bf16 one nexus-bench gives it;
#   tuning:  Inductor's block-size tuning of its generated kernels (coordinate descent) at 1B and 130M;
#   costs:   the measurements of experiments/compute.py's H100_BENCH (130M and 1B with AdamW, Nexus, Muon
#            and Nexus-Muon, 520M with AdamW; paper batch and sequence length), and each preset's GEMMs
#            timed on their own (bench_matmul.py --preset: the MFU bound they set; cuBLAS and cuBLASLt);
#   3b:      llama_3b on the one GPU at the paper's global batch: no recomputation with 4- and 2-sequence
#            micro-batches, every second block and every block recomputed with 4; then nexus-train itself.
# Each call first prints the GPU's clocks and its measured matmul and copy ceilings (bench_matmul.py).
# Results (JSON, logs, profiles) go to $OUT/gpu_bench.tgz, refreshed after each run. On a machine without
# a package index, put hydra/omegaconf wheels in .whl (scripts/minirepro/fetch_wheels.sh builds such a set).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_bench}; RES=/tmp/gpu_bench_results; mkdir -p "$OUT" "$RES"
source scripts/gpu_env.sh
clocks() { gpu_clocks "$RES/gpu.txt"; }
clocks
python3 scripts/bench_matmul.py 2>&1 | tee -a "$RES/gpu.txt"  # this GPU's matmul and copy ceilings
bench() {  # NAME SECONDS ARGS...: one nexus-bench run (RES/NAME.log, RES/NAME.json), then the archive refreshed
  local name=$1; shift
  nexus_bench "$RES/$name" "$@"
  tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
}
train() {  # PRESET MICRO STEPS SECONDS: nexus-train itself with Nexus on the embedded corpus, 256 x 2048 per step
  local preset=$1 micro=$2 steps=$3 limit=$4 name=trainer_${1#llama_}
  echo "=== trainer: nexus-train $preset, Nexus, $steps steps of 256 x 2048 on the embedded corpus"
  timeout "$limit" python3 -m nexus_pretrain model=$preset model.vocab_size=32000 optim=nexus data.seq_len=2048 \
    trainer.global_batch=256 trainer.micro_batch=$micro trainer.max_steps=$steps trainer.log_every=1 \
    trainer.eval_every=0 trainer.checkpoint_every=0 trainer.export_hf=false trainer.compile=true \
    schedule.warmup_steps=1 schedule.decay_steps=1 trainer.run_dir=/tmp/$name > "$RES/$name.log" 2>&1
  echo "exit $? after ${SECONDS}s"; cp /tmp/$name/metrics.jsonl "$RES/${name}_metrics.jsonl"
  tail -c 400 "$RES/$name.log"; grep -o '"step": [0-9]*\|"tokens_per_s": [0-9.]*\|"mfu": [0-9.]*' \
    "$RES/${name}_metrics.jsonl" | paste -sd' '
}
case "${1:-defaults}" in
  residual)  # the bf16 residual stream (both models) at 130M and 1B: micro-batch, SDPA backend, profiles
    bf16="--residual-dtype bfloat16"
    bench 1b_mb16_bf16res 170 --preset llama_1b --micro-batch 16 --accum 8 --steps 2 --warmup 1 $bf16 \
      --profile "$RES/profile"
    bench 1b_mb16_bf16res_flash 90 --preset llama_1b --micro-batch 16 --accum 8 --steps 2 --warmup 1 $bf16 \
      --optimizers adamw --sdpa-backend flash
    bench 130m_bf16res 150 --preset llama_130m --micro-batch 32 --global-batch 256 --steps 2 --warmup 1 $bf16 \
      --models ours,hf --profile "$RES/profile"
    bench 130m_mb64_bf16res 60 --preset llama_130m --micro-batch 64 --accum 4 --steps 2 --warmup 1 $bf16 --optimizers adamw
    bench 130m_bf16res_flash 60 --preset llama_130m --micro-batch 32 --accum 8 --steps 2 --warmup 1 $bf16 \
      --optimizers adamw --sdpa-backend flash
    clocks
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  defaults)  # the README table with the defaults (bf16 residual stream, SDPA flash first), each model at the
    # largest micro-batch that fits, and the trainer's own tokens/s; "defaults 1b" or "defaults small"
    one="--global-batch 256 --steps 2 --warmup 1 --models ours,hf"
    if [ "${2:-1b}" = 1b ]; then
      bench 1b 330 --preset llama_1b --micro-batch 16 --hf-micro-batch 8 $one
      train llama_1b 16 4 200
    elif [ "$2" = table ]; then  # the three sizes of the README table, in one call
      bench 1b 300 --preset llama_1b --micro-batch 16 --hf-micro-batch 8 $one
      bench 130m 120 --preset llama_130m --micro-batch 64 --hf-micro-batch 32 $one --optimizers adamw
      bench 520m 150 --preset llama_520m --micro-batch 16 --hf-micro-batch 16 $one --optimizers adamw
    else
      bench 130m 170 --preset llama_130m --micro-batch 64 --hf-micro-batch 32 $one
      bench 520m 200 --preset llama_520m --micro-batch 16 --hf-micro-batch 16 $one
      bench 3b_ac 130 --preset llama_3b --micro-batch 4 --accum 8 --activation-checkpointing 1 --steps 2 --warmup 1
    fi
    clocks
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  hf1b)  # HF's 1B with its fp32 residual stream (as its users run it) and with the bf16 one (our hook)
    for res in embedding bfloat16; do
      bench "1b_hf_$res" 100 --preset llama_1b --models hf --optimizers adamw --micro-batch 8 --accum 4 --steps 2 \
        --warmup 1 --residual-dtype $res
    done
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  tuning)  # Inductor's coordinate-descent tuning of its Triton kernels (norms, SwiGLU, RoPE, loss), on and off
    one="--accum 4 --steps 2 --warmup 1"
    bench 1b_base 120 --preset llama_1b --micro-batch 16 $one
    TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 bench 1b_cdt 200 --preset llama_1b --micro-batch 16 $one \
      --profile "$RES/profile"
    bench 130m_base 60 --preset llama_130m --micro-batch 64 $one --optimizers adamw
    TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 bench 130m_cdt 120 --preset llama_130m --micro-batch 64 $one \
      --optimizers adamw --profile "$RES/profile"
    TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 bench 130m_cdt_flash 60 --preset llama_130m --micro-batch 64 $one \
      --optimizers adamw --sdpa-backend flash
    clocks
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  costs)  # H100_BENCH of experiments/compute.py, and the GEMM-only MFU bound of each preset
    for spec in llama_1b:32768 llama_520m:32768 llama_130m:131072; do
      python3 scripts/bench_matmul.py --iters 20 --preset ${spec%:*} --tokens ${spec#*:} 2>&1 | tee -a "$RES/gemms.txt"
    done
    TORCH_BLAS_PREFER_CUBLASLT=1 python3 scripts/bench_matmul.py --iters 20 --preset llama_1b 2>&1 \
      | tee "$RES/gemms_cublaslt_1b.txt"
    all="--global-batch 256 --steps 2 --warmup 1 --optimizers adamw,nexus,muon,nexus_muon"
    bench 1b_costs 330 --preset llama_1b --micro-batch 16 $all
    bench 130m_costs 200 --preset llama_130m --micro-batch 64 $all
    bench 520m_costs 100 --preset llama_520m --micro-batch 16 --global-batch 256 --steps 2 --warmup 1 --optimizers adamw
    clocks
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  3b)  # llama_3b on one GPU, AdamW and Nexus, global batch 256: how much recomputation it needs
    paper="--preset llama_3b --global-batch 256 --steps 1 --warmup 1"  # one timed step: 18-24 s
    bench 3b_mb4_noac 200 $paper --micro-batch 4
    bench 3b_mb2_noac 200 $paper --micro-batch 2
    bench 3b_mb4_ac2 200 $paper --micro-batch 4 --activation-checkpointing 2
    bench 3b_mb4_ac1 200 $paper --micro-batch 4 --activation-checkpointing 1
    train llama_3b 4 3 330
    clocks
    tar czf "$OUT/gpu_bench.tgz" -C "$RES" .
    ;;
  *) echo "usage: $0 residual|defaults [1b|small|table]|hf1b|tuning|costs|3b"; exit 2 ;;
esac
