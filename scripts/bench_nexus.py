"""Step time and peak memory of Nexus vs plain accumulation (AdamW), same model and data, one process.

A stack of residual Linear-GELU-Linear blocks on random data; each optimizer gets a fresh copy of
the same initial model. Step time is the median over timed steps after warmup (synchronized on GPU);
peak memory is torch.cuda.max_memory_allocated (GPU only). Example:

    python scripts/bench_nexus.py                       # tiny CPU run, a few seconds
    python scripts/bench_nexus.py --device cuda --dim 2048 --layers 16 --micro-batch 8 --seq-len 1024
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from nexus_pretrain.optim.base import Accumulate
from nexus_pretrain.optim.nexus import Nexus


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(x)))


def make_model(dim: int, layers: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[Block(dim) for _ in range(layers)])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(make_opt: Callable[[nn.Module], object], base: nn.Module, args: argparse.Namespace,
        device: torch.device) -> Dict[str, Optional[float]]:
    """Median step time (s) and peak memory (GiB, GPU only) of one optimizer."""
    model = copy.deepcopy(base).to(device)
    opt = make_opt(model)
    gen = torch.Generator(device=device).manual_seed(1)
    shape = (args.micro_batch, args.seq_len, args.dim)
    batches = [(torch.randn(shape, device=device, generator=gen), torch.randn(shape, device=device, generator=gen))
               for _ in range(args.accum)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: List[float] = []
    for _ in range(args.warmup + args.steps):
        sync(device)
        start = time.perf_counter()
        for x, y in batches:
            with autocast:
                loss = nn.functional.mse_loss(model(x).float(), y) / args.accum
            loss.backward()
            opt.micro_step()
        opt.step()
        opt.zero_grad()
        sync(device)
        times.append(time.perf_counter() - start)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del model, opt, batches
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"step_s": statistics.median(times[args.warmup:]), "peak_gib": memory}


def main() -> None:
    """Parse arguments, run AdamW and Nexus (anchor on device, then offloaded), print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--accum", type=int, default=4, help="micro-batches per step (K)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (fp32 master weights)")
    parser.add_argument("--inner-lr", type=float, default=0.01)
    args = parser.parse_args()
    for name in ("dim", "layers", "micro_batch", "seq_len", "accum", "steps"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    base = make_model(args.dim, args.layers)
    n_params = sum(p.numel() for p in base.parameters())
    fused = device.type == "cuda"

    def adamw(model: nn.Module) -> torch.optim.AdamW:
        return torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.2,
                                 fused=fused)

    runs = {
        "adamw": run(lambda m: Accumulate(adamw(m), max_grad_norm=1.0), base, args, device),
        "nexus": run(lambda m: Nexus(adamw(m), args.inner_lr, max_grad_norm=1.0), base, args, device),
        "nexus_offload": run(lambda m: Nexus(adamw(m), args.inner_lr, offload_anchor=True, max_grad_norm=1.0),
                             base, args, device),
    }
    print(f"device={device} params={n_params / 1e6:.2f}M dim={args.dim} layers={args.layers} "
          f"micro_batch={args.micro_batch} seq_len={args.seq_len} accum={args.accum} steps={args.steps} "
          f"bf16={args.bf16}")
    ref = runs["adamw"]
    for name, res in runs.items():
        line = f"{name:14s} step {res['step_s'] * 1e3:9.2f} ms  x{res['step_s'] / ref['step_s']:.3f}"
        if res["peak_gib"] is not None:
            line += f"   peak {res['peak_gib']:7.3f} GiB  x{res['peak_gib'] / ref['peak_gib']:.3f}"
        print(line)


if __name__ == "__main__":
    main()
