"""The GPU's own ceilings, to read nexus-bench's MFU against: dense bf16 matmul TFLOP/s and device-memory
copy bandwidth. GPUs of one kind differ by several percent (clocks, power limits), so every
gpu_bench.sh call prints these first.

With --preset, also every GEMM of one training micro-batch of that model (nexus_pretrain.bench.gemms) at
its own shape and layout, and the MFU the model would reach if nothing but these GEMMs took time: the
bound that attention, norms, SwiGLU and the loss eat into.

    python scripts/bench_matmul.py [--size 8192] [--iters 50] [--preset llama_1b --tokens 32768]
"""

from __future__ import annotations

import argparse
from typing import Dict, Tuple

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


def gemm_ms(m: int, k: int, n: int, transpose_a: bool, transpose_b: bool, iters: int) -> float:
    """Milliseconds of one bf16 (m, k) x (k, n) product with the given operand layouts."""
    a = torch.randn(k, m, device="cuda", dtype=torch.bfloat16).t() if transpose_a else \
        torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16).t() if transpose_b else \
        torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
    return timed_ms(lambda: a @ b, iters)


def model_gemm_report(preset: str, tokens: int, seq_len: int, vocab: int, iters: int) -> None:
    """Prints each GEMM's TFLOP/s, their total time and the MFU bound they set."""
    from nexus_pretrain.bench.gemms import model_gemms
    from nexus_pretrain.config import ModelConfig
    from nexus_pretrain.model.llama import flops_per_token
    from nexus_pretrain.model.presets import mfu_parameters, resolve_model_args

    args = resolve_model_args(ModelConfig(preset=preset), vocab, seq_len)  # nexus-bench's shape
    gemms = model_gemms(args, tokens)
    measured: Dict[Tuple[int, int, int, bool, bool], float] = {}
    total_ms = 0.0
    print(f"{preset}, {tokens} tokens per micro-batch:")
    for g in gemms:
        key = (g.m, g.k, g.n, g.transpose_a, g.transpose_b)
        if key not in measured:
            measured[key] = gemm_ms(*key, iters)
        ms = measured[key] * g.count
        total_ms += ms
        print(f"  {g.name:14s} {g.m:>7d} x {g.k:>7d} x {g.n:>7d}  x{g.count:<3d} {ms:8.2f} ms  "
              f"{g.flops / ms / 1e9:5.0f} TFLOP/s")
    bound = flops_per_token(args, seq_len, mfu_parameters(args)) * tokens / (total_ms / 1e3) / 989e12
    print(f"  all GEMMs {total_ms:.1f} ms, {sum(g.flops for g in gemms) / total_ms / 1e9:.0f} TFLOP/s; "
          f"MFU if nothing else took time: {bound:.1%}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=8192, help="n of the n x n x n matmul")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--preset", help="also time this model preset's GEMMs (llama_130m, ..., llama_3b)")
    p.add_argument("--tokens", type=int, default=32768, help="tokens per micro-batch, for --preset")
    p.add_argument("--seq-len", type=int, default=2048, help="for --preset's attention FLOPs")
    p.add_argument("--vocab", type=int, default=32000, help="for --preset")
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
    if args.preset:
        del a, b, src, dst
        model_gemm_report(args.preset, args.tokens, args.seq_len, args.vocab, args.iters)


if __name__ == "__main__":
    main()
