"""Isolated cost of Nexus's per-micro-batch work on a parameter set shaped like a preset, against the
work plain accumulation does at the same point (autograd's ``grad += new``), on one GPU.

Prints milliseconds per micro-step for each candidate implementation, so the inner step can be
chosen by measurement. ``python scripts/bench_inner_step.py --preset llama_1b``
"""

from __future__ import annotations

import argparse
import statistics
from types import SimpleNamespace

import torch

from nexus_pretrain.model.llama import Llama
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.optim.nexus import Nexus


def timed(fn, repeats: int) -> float:
    """Median milliseconds of fn() over repeats, CUDA-event timed."""
    times = []
    for _ in range(repeats + 2):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="llama_1b")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with torch.device("meta"):
        shapes = [p.shape for p in Llama(resolve_model_args(SimpleNamespace(preset=args.preset), 32000, 2048)).parameters()]
    params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in shapes]
    grads = [torch.randn_like(p) for p in params]
    n = sum(p.numel() for p in params)
    print(f"{args.preset}: {n / 1e9:.3f}B fp32 parameters in {len(params)} tensors")

    def accumulate():  # what autograd does for micro-batches 2..K under plain accumulation
        torch._foreach_add_(grads, grads)

    nexus = Nexus(torch.optim.SGD(params, lr=0.0), inner_lr=1e-3)

    def nexus_micro_step():
        for p, g in zip(params, grads):
            p.grad = g
        nexus.micro_step()

    def norm_only():
        torch.nn.utils.get_total_norm(grads, foreach=True)

    def norm_scale_subtract():  # the first implementation: three kernels, five fp32 passes
        norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        scaled = torch._foreach_mul(grads, 1e-3 / norm)
        torch._foreach_sub_(params, scaled)

    def norm_then_fused_add_with_sync():  # one pass over p and g, but a host sync for the scalar
        norm = torch.nn.utils.get_total_norm(grads, foreach=True)
        torch._foreach_add_(params, grads, alpha=-1e-3 / float(norm))

    with torch.no_grad():
        rows = {
            "plain accumulation (grad += new)": timed(accumulate, args.repeats),
            "global norm only": timed(norm_only, args.repeats),
            "norm, scale, subtract (3 kernels)": timed(norm_scale_subtract, args.repeats),
            "Nexus.micro_step update (norm in backward)": timed(nexus_micro_step, args.repeats),
            "norm + host sync + fused add": timed(norm_then_fused_add_with_sync, args.repeats),
        }
    bytes_per_pass = 4 * n
    for name, ms in rows.items():
        print(f"{name:<40} {ms:8.2f} ms  ({bytes_per_pass / (ms / 1e3) / 1e12:6.2f} TB/s per fp32 pass)")


if __name__ == "__main__":
    main()
