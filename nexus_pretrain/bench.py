"""nexus-bench: step time, tokens/s, MFU and peak memory of our model under AdamW and Nexus, in one
process on one device, with the ratios Nexus/AdamW. A benchmark to run, not a timed test."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

import torch

from nexus_pretrain.config import ModelConfig, OptimConfig
from nexus_pretrain.model.llama import Llama, count_parameters, flops_per_token, lm_loss
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.train.metrics import peak_flops


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nexus-bench", description=__doc__)
    p.add_argument("--preset", default="tiny", help="model preset (tiny, llama_130m, ..., llama_3b)")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary size")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per micro-batch")
    p.add_argument("--accum", type=int, default=4, help="micro-batches per optimizer step")
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile each block")
    p.add_argument("--optimizers", default="adamw,nexus,nexus_offload",
                   help="comma list of adamw, nexus, nexus_offload, muon, nexus_muon")
    p.add_argument("--in-process", action="store_true",
                   help="run all optimizers in this process (default: one fresh process each, so no memory "
                        "or compile cache from one run skews the next)")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a child's result on stdout
    return p.parse_args(argv)


def run_isolated(name: str, argv: List[str]) -> Dict[str, float]:
    """run_one for a single optimizer in a fresh Python process."""
    child = [a for a in argv if not a.startswith("--optimizers")]
    if "--optimizers" in argv:  # drop "--optimizers VALUE" given as two arguments
        i = argv.index("--optimizers")
        child = argv[:i] + argv[i + 2:]
    proc = subprocess.run([sys.executable, "-m", "nexus_pretrain.bench", *child, "--optimizers", name, "--json"],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"nexus-bench: the {name} run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _optim_config(name: str) -> OptimConfig:
    configs = {
        "adamw": OptimConfig(name="adamw"),
        "muon": OptimConfig(name="muon", weight_decay=0.1),
        "nexus": OptimConfig(name="nexus"),
        "nexus_offload": OptimConfig(name="nexus", offload_anchor=True),
        "nexus_muon": OptimConfig(name="nexus", outer="muon"),
    }
    if name not in configs:
        raise SystemExit(f"--optimizers: unknown {name!r}; choose from {', '.join(configs)}")
    return configs[name]


def run_one(name: str, args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """Time args.steps optimizer steps of one optimizer on a fresh model; returns its measurements."""
    torch.manual_seed(0)
    model_args = resolve_model_args(ModelConfig(preset=args.preset), args.vocab, args.seq_len)
    model = Llama(model_args).to(device)
    if args.compile:
        for block in model.layers:
            block.compile()
    optimizer = build_optimizer(_optim_config(name), model)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    gen = torch.Generator(device="cpu").manual_seed(0)
    batches = [torch.randint(0, args.vocab, (args.micro_batch, args.seq_len + 1), generator=gen).to(device)
               for _ in range(args.accum)]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        for batch in batches:
            with autocast:
                loss = lm_loss(model(batch[:, :-1]), batch[:, 1:])
            (loss / args.accum).backward()
            optimizer.micro_step()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    step_time = statistics.median(times)
    tokens_per_s = args.micro_batch * args.accum * args.seq_len / step_time
    out = {"step_s": step_time, "tokens_per_s": tokens_per_s}
    peak = peak_flops(device)
    if peak:
        out["mfu"] = tokens_per_s * flops_per_token(model_args, args.seq_len, count_parameters(model)) / peak
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del model, optimizer
    return out


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, float]]:
    """Run the benchmark and print one row per optimizer plus ratios against the first."""
    args = _parse(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    if args.json:
        print(json.dumps(run_one(names[0], args, device)))
        return {}
    argv = sys.argv[1:] if argv is None else argv
    if args.in_process or len(names) == 1:
        results = {name: run_one(name, args, device) for name in names}
    else:
        results = {name: run_isolated(name, argv) for name in names}
    base = results[names[0]]
    print(f"preset={args.preset} device={device} seq_len={args.seq_len} micro_batch={args.micro_batch} "
          f"accum={args.accum} steps={args.steps}")
    print(f"{'optimizer':<14} {'step s':>9} {'tok/s':>11} {'MFU':>7} {'peak GiB':>9} {'time ratio':>11} {'mem ratio':>10}")
    for name, r in results.items():
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "—"
        mem = f"{r['peak_mem_gib']:.2f}" if "peak_mem_gib" in r else "—"
        mem_ratio = f"{r['peak_mem_gib'] / base['peak_mem_gib']:.3f}" if "peak_mem_gib" in r else "—"
        print(f"{name:<14} {r['step_s']:>9.4f} {r['tokens_per_s']:>11.0f} {mfu:>7} {mem:>9} "
              f"{r['step_s'] / base['step_s']:>11.3f} {mem_ratio:>10}")
    return results


if __name__ == "__main__":
    main()
