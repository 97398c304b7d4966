# Sourced by the GPU scripts (gpu_bench.sh, gpu_float8.sh, gpu_check.sh, gpu_multi.sh) from the repository root:
# installs the wheels in .whl when there is one (machines without a package index), makes output unbuffered,
# sets the CUDA allocator nexus-train and nexus-bench default to (cli.default_cuda_allocator), and defines
#   gpu_clocks FILE               the GPU's clocks, power and throttle reasons, appended to FILE (and shown);
#   nexus_bench STEM SECONDS ARGS one nexus-bench run at sequence 2048, compiled: its table in STEM.log,
#                                 its results in STEM.json, the table shown.
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
gpu_clocks() {  # before and after a measurement: a throttled GPU shows here
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active \
    --format=csv,noheader | tee -a "$1"
}
nexus_bench() {
  local stem=$1 limit=$2; shift 2
  echo "=== ${stem##*/}: $*"
  timeout "$limit" python3 -m nexus_pretrain.bench --compile --seq-len 2048 --in-process --json-out "$stem.json" "$@" \
    > "$stem.log" 2>&1
  echo "exit $? after ${SECONDS}s"; grep -v Warning "$stem.log" | grep -A20 "^preset="
}
