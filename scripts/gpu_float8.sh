#!/usr/bin/env bash
# FP8 training (model.float8) measured on one GPU, each mode one invocation of under ten minutes (LIMIT:
# the seconds one may take, 570 unless set; levers takes about nine minutes on an H100):
#   main:  nexus-bench --float8 at 1B (global batch 256 x 2048, AdamW and Nexus); the same-loss check:
#          nexus-train 520M for 500 steps of 32 x 512 tokens on the mini reproduction's corpus
#          (data/minirepro/shards: build_corpus.py and nexus-data prepare, see docs/performance-fp8.md),
#          AdamW, the same seed and batches, bf16 and FP8 (every block linear and the head converted:
#          model.float8_min_dim=0), both at once on the GPU; then where FP8 pays per layer
#          (bench_float8_layers.py: every distinct linear layer of 1B, 3B, 520M and 130M at its micro-batch,
#          bf16 against tensorwise and rowwise FP8), as far as the time allows;
#   sizes: nexus-bench --float8 at 3B and 520M, then 1B with the rowwise recipe if the time allows;
#   levers: the GPU tests of model.float8; the same-loss check at 1B (nexus-train llama_1b, 500 steps of
#          16 x 512 tokens, AdamW, bf16 against FP8 as model.float8=true converts by default and against FP8
#          on the block linears only, without the head and fast accumulation; at once on the GPU); then per
#          layer (1B at micro-batch 16, 3B at 4 and 8, the output heads) bf16 against tensorwise FP8 with and
#          without fast accumulation in the backward matmuls;
#   table: nexus-bench --float8 at 1B (micro-batch 16, two timed steps) and 3B (micro-batch 4, one) with the
#          default FP8 settings, AdamW and Nexus with nexus-train's default of 4 inner steps per step, global
#          batch 256 x 2048; the GPU tests; then 520M as the time allows;
#   profile: where the FP8 step's time goes: nexus-bench --float8 --profile at 1B (AdamW, four micro-batches
#          per step), the device time by kernel category (FP8 scaling and casts among them) in profile/;
#          then per layer as in levers, and 3B at micro-batch 8 on a GPU with the memory for it;
#   options: Inductor options on the compiled regions (nexus-bench --inductor-option), each in a fresh process,
#          on the 1B step at four micro-batches of 16 (AdamW): bf16 and FP8 with the defaults, then FP8 with
#          coordinate-descent tuning of the kernels' block sizes, with combo kernels (independent kernels
#          fused side by side), with autotuned pointwise kernels, then bf16 with coordinate-descent tuning,
#          as far as the time allows;
#   cast:  the GPU tests of model.float8; then what casting each FP8 input and weight once gives: the 1B FP8
#          step at four micro-batches of 16 (AdamW), each cast once (the default) and again in backward
#          (--float8-cast-twice),
#          alternating, twice each, each in a fresh process; bf16 once; then 3B (micro-batch 4) both ways as
#          far as the time allows;
#   keep:  the GPU tests; FP8 weights kept across micro-batches (--float8-cache-weights) against cast in each
#          forward: 3B (four micro-batches of 4, AdamW) alternating, twice each, then 1B (four of 16), each in
#          a fresh process, as far as the time allows;
#   inner: Nexus/AdamW step time with Nexus's inner steps as nexus-train's default (4 per step, each inner batch
#          16 micro-batches at 3B, 4 at 1B): 3B then 1B in FP8, global batch 256 x 2048;
#   (table and inner pass any arguments after the mode on to nexus-bench, e.g. --float8-cache-weights)
#   nexus: how much of Nexus's alignment term survives bf16 and real FP8 forwards at 1B (random
#          initialization, 8 inner batches of 4 x 512 random tokens, step ratios 1.5e-5 (the paper's inner
#          learning rate at 1B) and 1e-4; scripts/nexus_precision.py).
# Each invocation prints the GPU's clocks and its measured matmul and copy ceilings first, and the torch and
# torchao versions. Results (JSON, logs, metrics) go to $OUT/gpu_float8.tgz, refreshed after each run. On
# machines without a package index, hydra/omegaconf/torchao travel as wheels in .whl.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_float8}; RES=/tmp/gpu_float8_results; mkdir -p "$OUT" "$RES"
export TMPDIR=${TMPDIR:-$(mktemp -d)}
source scripts/gpu_env.sh
pack() { tar czf "$OUT/gpu_float8.tgz" -C "$RES" .; }
clocks() { gpu_clocks "$RES/gpu.txt"; }
clocks
python3 -c "import torch, torchao; print('torch', torch.__version__, 'torchao', torchao.__version__)" 2>&1 \
  | grep -v "Failed to load\|register_constant" | tee -a "$RES/gpu.txt"
python3 scripts/bench_matmul.py --iters 20 2>&1 | tee -a "$RES/gpu.txt"
bench() {  # NAME SECONDS ARGS...: one nexus-bench run (RES/NAME.log, RES/NAME.json), then the archive refreshed
  local name=$1; shift
  nexus_bench "$RES/$name" "$@"
  pack
}
loss_run() {  # NAME SECONDS OVERRIDES...: nexus-train for 500 steps (520M, 32 x 512 tokens unless overridden)
  local name=$1 limit=$2; shift 2
  timeout "$limit" python3 -m nexus_pretrain model=llama_520m data=minirepro optim=adamw optim.lr=1e-3 \
    trainer.global_batch=32 trainer.micro_batch=32 trainer.max_steps=500 trainer.log_every=5 trainer.eval_every=250 \
    trainer.checkpoint_every=0 trainer.export_hf=false trainer.compile=true trainer.seed=0 logging.progress_bar=false \
    trainer.run_dir=/tmp/$name "$@" > "$RES/$name.log" 2>&1
  echo "$name exit $? after ${SECONDS}s"; cp /tmp/$name/metrics.jsonl "$RES/${name}_metrics.jsonl"
}
gpu_tests() {  # the GPU tests of model.float8, with pytest's summary line
  timeout 180 python3 -m pytest -o addopts="" --import-mode=importlib -q -rfEs -p no:cacheprovider -m gpu tests/model/test_float8.py \
    tests/model/test_float8_weights.py 2>&1 \
    | grep -E "passed|failed|error|FAILED|ERROR|SKIPPED" | tee "$RES/gpu_tests.txt"
  pack
}
layers() {  # SECONDS ARGS...: bench_float8_layers.py (RES/layers.json, .log) if more than SECONDS of LIMIT are left
  local need=$1; shift
  [ "$(left)" -gt "$need" ] || return 0
  timeout "$(left)" python3 scripts/bench_float8_layers.py "$@" --json-out "$RES/layers.json" 2>&1 \
    | grep -v "Failed to load\|register_constant\|Warning" | tee "$RES/layers.log"
}
gpu_mib() { nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -n 1; }
mode=${1:-main}; shift $(( $# > 0 ? 1 : 0 )); extra=("$@")  # nexus-bench arguments for table and inner
paper="--global-batch 256 --float8 --optimizers adamw,nexus --inner-steps 4"
left() { echo $(( ${LIMIT:-570} - SECONDS )); }  # seconds left of LIMIT; later parts run only if they fit
case "$mode" in
  main)
    bench 1b 270 --preset llama_1b --micro-batch 16 $paper --steps 1 --warmup 1
    loss_run loss_bf16 230 &
    loss_run loss_fp8 230 model.float8=true model.float8_min_dim=0 &
    wait
    tail -n 2 "$RES"/loss_*.log; pack
    layers 40 --presets llama_1b:16,llama_3b:4,llama_520m:16,llama_130m:64 --head
    clocks; pack
    ;;
  sizes)
    bench 3b 300 --preset llama_3b --micro-batch 4 $paper --steps 1 --warmup 1
    bench 520m 200 --preset llama_520m --micro-batch 16 $paper --steps 1 --warmup 1
    [ "$(left)" -gt 70 ] && bench 1b_rowwise "$(left)" --preset llama_1b --micro-batch 16 --global-batch 256 \
      --float8 rowwise --models ours_fp8 --optimizers adamw --steps 1 --warmup 1
    clocks; pack
    ;;
  levers)
    gpu_tests
    pack
    b1="model=llama_1b optim.lr=5e-4 trainer.global_batch=16 trainer.micro_batch=16"
    loss_run loss1b_bf16 300 $b1 &
    loss_run loss1b_fp8 300 $b1 model.float8=true &
    # three 1B runs need about 90 GiB: on a smaller GPU the third waits for the first two
    [ "$(gpu_mib)" -lt 100000 ] && wait
    loss_run loss1b_fp8_blocks_only 300 $b1 model.float8=true model.float8_head=false model.float8_fast_accum=false &
    wait
    tail -n 2 "$RES"/loss1b_*.log; pack
    layers 40 --presets llama_1b:16,llama_3b:4,llama_3b:8 --head --recipes tensorwise,tensorwise+fast --iters 10
    clocks; pack
    ;;
  table)
    bench 1b 230 --preset llama_1b --micro-batch 16 $paper --steps 2 --warmup 1 "${extra[@]}"
    bench 3b "$(left)" --preset llama_3b --micro-batch 4 $paper --steps 1 --warmup 1 "${extra[@]}"
    gpu_tests
    [ "$(left)" -gt 120 ] && bench 520m "$(left)" --preset llama_520m --micro-batch 16 $paper --steps 2 --warmup 1 \
      "${extra[@]}"
    clocks; pack
    ;;
  profile)
    bench 1b_profile 200 --preset llama_1b --micro-batch 16 --accum 4 --float8 --optimizers adamw --steps 2 \
      --warmup 1 --profile "$RES/profile"
    layers 60 --presets llama_1b:16,llama_3b:4,llama_3b:8 --head --recipes tensorwise,tensorwise+fast --iters 10
    pack
    if [ "$(gpu_mib)" -ge 100000 ] && [ "$(left)" -gt 150 ]; then
      bench 3b_micro8 "$(left)" --preset llama_3b --micro-batch 8 $paper --steps 1 --warmup 1
    fi
    clocks; pack
    ;;
  options)
    step1b="--preset llama_1b --micro-batch 16 --accum 4 --optimizers adamw --steps 3 --warmup 1"
    bench opt_base 200 $step1b --models ours,ours_fp8
    for opt in coordinate_descent_tuning combo_kernels max_autotune_pointwise; do
      [ "$(left)" -gt 90 ] && bench "opt_$opt" "$(left)" $step1b --models ours_fp8 --inductor-option "$opt=true"
    done
    [ "$(left)" -gt 90 ] && bench opt_bf16_coordinate_descent_tuning "$(left)" $step1b --models ours \
      --inductor-option coordinate_descent_tuning=true
    clocks; pack
    ;;
  cast)
    gpu_tests
    step1b="--preset llama_1b --micro-batch 16 --accum 4 --optimizers adamw --steps 3 --warmup 1"
    for round in 1 2; do
      bench "cast_once_$round" 150 $step1b --models ours_fp8
      bench "cast_twice_$round" 150 $step1b --models ours_fp8 --float8-cast-twice
    done
    [ "$(left)" -gt 80 ] && bench cast_bf16 "$(left)" $step1b --models ours
    step3b="--preset llama_3b --micro-batch 4 --accum 4 --optimizers adamw --steps 2 --warmup 1 --models ours_fp8"
    [ "$(left)" -gt 180 ] && bench cast_once_3b 120 $step3b && bench cast_twice_3b "$(left)" $step3b --float8-cast-twice
    clocks; pack
    ;;
  keep)
    gpu_tests
    step1b="--preset llama_1b --micro-batch 16 --accum 4 --optimizers adamw --steps 3 --warmup 1 --models ours_fp8"
    step3b="--preset llama_3b --micro-batch 4 --accum 4 --optimizers adamw --steps 3 --warmup 1 --models ours_fp8"
    for round in 1 2; do
      [ "$(left)" -gt 100 ] && bench "keep_3b_$round" "$(left)" $step3b --float8-cache-weights
      [ "$(left)" -gt 100 ] && bench "cast_3b_$round" "$(left)" $step3b
    done
    [ "$(left)" -gt 100 ] && bench keep_1b "$(left)" $step1b --float8-cache-weights
    [ "$(left)" -gt 100 ] && bench cast_1b "$(left)" $step1b
    clocks; pack
    ;;
  inner)
    for preset in llama_3b:4 llama_1b:16; do
      [ "$(left)" -gt 100 ] && bench "${preset%%:*}_inner4" "$(left)" --preset "${preset%%:*}" --micro-batch "${preset##*:}" \
        --global-batch 256 --float8 --optimizers adamw,nexus --inner-steps 4 --steps 1 --warmup 1 --models ours_fp8 \
        "${extra[@]}"
    done
    clocks; pack
    ;;
  nexus)
    timeout "$(left)" python3 scripts/nexus_precision.py --preset llama_1b --device cuda --vocab 32000 --seq-len 512 --ratios 1.5e-5,1e-4 \
      --batch 4 --json-out "$RES/nexus_precision_1b.json" 2>&1 | grep -v "Failed to load\|register_constant\|Warning" \
      | tee "$RES/nexus_precision_1b.txt"
    clocks; pack
    ;;
  *) echo "usage: $0 main|sizes|levers|table|profile|options|cast|keep|inner|nexus"; exit 2 ;;
esac
