"""The GPU's own ceilings, to read nexus-bench's MFU against: dense bf16 matmul TFLOP/s and device-memory
copy bandwidth. Lent GPUs of one kind differ by several percent (clocks, power limits), so every
gpu_bench.sh call prints these first.

    python scripts/bench_matmul.py [--size 8192] [--iters 50]
"""

from __future__ import annotations

import argparse

import torch


def timed_ms(fn, iters: int) -> float:
    """Mean milliseconds of fn() over iters runs, after one untimed run."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192, help="n of the n x n x n matmul")
    p.add_argument("--iters", type=int, default=50)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_matmul.py needs a CUDA GPU")
    n = args.size
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    tflops = 2 * n**3 / timed_ms(lambda: a @ b, args.iters) / 1e9
    src = torch.empty(2**30, device="cuda", dtype=torch.uint8)  # 1 GiB
    dst = torch.empty_like(src)
    bandwidth = 2 * src.numel() / timed_ms(lambda: dst.copy_(src), args.iters) / 1e6  # read + write, GB/s
    props = torch.cuda.get_device_properties(0)
    print(f"{props.name}: bf16 matmul {n}^3 {tflops:.0f} TFLOP/s (MFU ceiling vs 989: {tflops / 989:.1%}), "
          f"copy {bandwidth:.0f} GB/s")


if __name__ == "__main__":
    main()
