"""nexus-bench: training-step time, tokens/s, MFU and peak memory on one device, for our model (also
with FP8 linears: --float8) and Hugging Face's LlamaForCausalLM of the same shape under the same
settings, each under AdamW and Nexus, with the ratios Nexus/AdamW, FP8/bf16 and ours/HF. MFU counts
against the GPU's dense bf16 peak, FP8 runs too. A benchmark to run, not a timed test."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from nexus_pretrain.bench.arguments import OPTIMIZERS, batching, names, parse_args, region_inductor_options
from nexus_pretrain.bench.memory import live_bytes_by_site
from nexus_pretrain.bench.models import MODELS, build_model
from nexus_pretrain.bench.profile import profile_step
from nexus_pretrain.config import ModelConfig
from nexus_pretrain.console import show
from nexus_pretrain.model import float8
from nexus_pretrain.model.float8 import float8_layers
from nexus_pretrain.model.llama import flops_per_token, head_sequence_losses
from nexus_pretrain.model.presets import mfu_parameters, resolve_model_args
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.rundir.environment import environment
from nexus_pretrain.train.backends.single import resolve_device
from nexus_pretrain.train.metrics import peak_flops, peak_memory_gib

log = logging.getLogger(__name__)

def child_argv(argv: List[str], model: str, optimizer: str) -> List[str]:
    """The command line of the child process that measures one model under one optimizer: the
    parent's, without its grid and output flags ("--flag VALUE" or "--flag=VALUE")."""
    child, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a.split("=", 1)[0] in ("--models", "--optimizers", "--json-out"):
            skip = "=" not in a
            continue
        child.append(a)
    return [*child, "--models", model, "--optimizers", optimizer, "--json"]


def _run_isolated(model: str, optimizer: str, argv: List[str]) -> Dict[str, float]:
    """run_one in a fresh Python process."""
    proc = subprocess.run([sys.executable, "-m", "nexus_pretrain.bench", *child_argv(argv, model, optimizer)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"nexus-bench: the {model}/{optimizer} run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_one(model_name: str, optimizer_name: str, args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """Time args.steps optimizer steps of one model under one optimizer; returns its measurements."""
    with float8.casts(once=not args.float8_cast_twice):  # read when the FP8 layers are traced
        return _timed_run(model_name, optimizer_name, args, device)


def _timed_run(model_name: str, optimizer_name: str, args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    torch.manual_seed(0)
    micro_batch, accum = batching(args, model_name)
    cuda = device.type == "cuda"
    if args.memory_census == "stacks" and cuda:
        torch.cuda.memory._record_memory_history(max_entries=100_000)
    if args.sdpa_backend:
        for backend in ("cudnn", "flash", "mem_efficient", "math"):
            getattr(torch.backends.cuda, f"enable_{backend}_sdp")(backend.startswith(args.sdpa_backend))
    model_cfg = ModelConfig(preset=args.preset, attention=args.attention, residual_dtype=args.residual_dtype,
                            float8="true" if model_name == "ours_fp8" else "false",
                            float8_recipe=args.float8 or "tensorwise", float8_min_dim=args.float8_min_dim,
                            float8_fast_accum=args.float8_fast_accum, float8_head=args.float8_head,
                            float8_cache_weights=args.float8_cache_weights)
    model_args = resolve_model_args(model_cfg, args.vocab, args.seq_len)
    bench = build_model(model_name, model_args, device, args.compile, args.activation_checkpointing,
                        inductor_options=region_inductor_options(args))
    if args.eager_head and model_name == "ours":
        bench.module.head_losses = head_sequence_losses
    optimizer = build_optimizer(OPTIMIZERS[optimizer_name], bench.module,
                                compile=args.compile and optimizer_name != "nexus_eager_step")
    if optimizer_name == "nexus_norm_per_param":  # the lever batched norms replaced, kept measurable
        optimizer._backward_norm.batch_elements = 0
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    gen = torch.Generator(device="cpu").manual_seed(0)
    batches = [torch.randint(0, args.vocab, (micro_batch, args.seq_len + 1), generator=gen).to(device)
               for _ in range(accum)]

    per_inner_batch = accum // args.inner_steps

    def step(micro_batches: List[torch.Tensor], boundary: Optional[List] = None) -> None:
        for i, batch in enumerate(micro_batches, start=1):
            with autocast:
                loss = bench.loss(batch)
            (loss / len(micro_batches)).backward()
            if i % per_inner_batch == 0 or i == len(micro_batches):  # an inner batch's end, as nexus-train
                optimizer.micro_step()
        if boundary is not None:
            boundary[0].record()
        optimizer.step()
        optimizer.zero_grad()
        if boundary is not None:
            boundary[1].record()

    for _ in range(args.warmup):  # one whole inner batch at least: Nexus's norm hooks learn its length
        step(batches[:max(2, per_inner_batch)])
    gc.collect()  # as the trainer does after its first step (train/callbacks.py release_garbage)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, events = [], []
    for _ in range(args.steps):
        boundary = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if cuda else None
        start = time.perf_counter()
        step(batches, boundary)
        if cuda:
            torch.cuda.synchronize(device)
            events.append(boundary)
        times.append(time.perf_counter() - start)
    step_time = statistics.median(times)
    tokens_per_s = micro_batch * accum * args.seq_len / step_time
    n_params = mfu_parameters(model_args)  # the same count for both models of this shape
    out = {"step_s": step_time, "tokens_per_s": tokens_per_s, "micro_batch": micro_batch, "accum": accum,
           "float8_layers": len(float8_layers(bench.module))}
    peak = peak_flops(device)
    if peak:
        out["mfu"] = tokens_per_s * flops_per_token(model_args, args.seq_len, n_params) / peak
    if cuda:
        out["peak_mem_gib"] = peak_memory_gib(device)
        out["boundary_ms"] = statistics.median(a.elapsed_time(b) for a, b in events)
        out["peak_gib_by_phase"] = _peak_by_phase(batches[:2], bench.loss, optimizer, autocast, device,
                                                  census=args.memory_census is not None)
        if args.profile:
            label = f"{args.preset}_{model_name}_{optimizer_name}"
            out["profile_ms"] = profile_step(lambda: step(batches), args.profile, label)
    del bench, optimizer
    return out


LEFT_ALLOCATED_GIB = 0.05
"""Memory a finished in-process run may leave allocated before later runs' peaks count as skewed."""


def allocated_gib(device: torch.device) -> Optional[float]:
    """GiB of the device's memory allocated now (None on CPU, where nothing is measured)."""
    return torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _forget_compiled_code(device: torch.device) -> None:
    """Between in-process runs: drop torch.compile's caches (their guards and graphs reference the
    previous run's model), collect garbage and return cached blocks, so the next run compiles afresh."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_in_process(model: str, optimizer: str, args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """run_one, then its compiled code and garbage dropped; a run that leaves memory allocated (a leak: the
    peaks of the runs after it in this process would include it) is warned about and records
    ``left_allocated_gib``."""
    before = allocated_gib(device)
    result = run_one(model, optimizer, args, device)
    _forget_compiled_code(device)
    after = allocated_gib(device)
    if before is not None and after is not None and after - before > LEFT_ALLOCATED_GIB:
        result["left_allocated_gib"] = after - before
        log.warning(f"nexus-bench: {model}/{optimizer} left {after - before:.2f} GiB allocated; the peak memory of "
                    "the runs after it in this process includes it (drop --in-process to run each alone)")
    return result


def _peak_by_phase(batches: List[torch.Tensor], loss_fn, optimizer, autocast, device: torch.device,
                   census: bool = False) -> Dict[str, float]:
    """Peak allocated GiB within each phase of one more step: forward, backward, micro_step (of any
    micro-batch) and the outer step; says where a run's peak memory is reached. With ``census``, prints
    what holds the live memory after the last micro-batch's forward (memory.py)."""
    peaks: Dict[str, float] = {}

    def end_of(phase: str) -> None:
        torch.cuda.synchronize(device)
        peaks[phase] = max(peaks.get(phase, 0.0), peak_memory_gib(device))
        torch.cuda.reset_peak_memory_stats(device)

    end_of("before")
    for i, batch in enumerate(batches):
        with autocast:
            loss = loss_fn(batch)
        end_of("forward")
        if census and i == len(batches) - 1:
            for size, count, site in live_bytes_by_site(torch.cuda.memory._snapshot()):
                log.info(f"memory census: {size / 2**30:7.2f} GiB in {count:5d} blocks  {site}")
            before = torch.cuda.memory_allocated(device)
            gc.collect()
            log.info(f"memory census: gc.collect() freed {(before - torch.cuda.memory_allocated(device)) / 2**30:.2f} GiB")
        (loss / len(batches)).backward()
        del loss
        end_of("backward")
        optimizer.micro_step()
        end_of("micro_step")
    optimizer.step()
    end_of("step")
    optimizer.zero_grad()
    return peaks


def _fmt(value: Optional[float], spec: str) -> str:
    return "—" if value is None else format(value, spec)


def print_table(results: Dict[str, Dict[str, Dict[str, float]]], args: argparse.Namespace, device: torch.device) -> None:
    """One row per model and optimizer; Nexus-vs-first-optimizer and ours-vs-HF ratios."""
    show(f"preset={args.preset} device={device} seq_len={args.seq_len} micro_batch={args.micro_batch} "
          f"accum={args.accum} inner_steps={args.inner_steps} steps={args.steps} compile={args.compile} attention={args.attention} "
          f"residual_dtype={args.residual_dtype} activation_checkpointing={args.activation_checkpointing} "
          f"float8={args.float8} float8_min_dim={args.float8_min_dim} float8_fast_accum={args.float8_fast_accum} "
          f"float8_head={args.float8_head} float8_cast_twice={args.float8_cast_twice} "
          f"float8_cache_weights={args.float8_cache_weights} "
          f"inductor_defaults={args.inductor_defaults} "
          f"inductor_options={args.inductor_option} "
          "(MFU against the dense bf16 peak)")
    show(f"{'model':<8} {'optimizer':<14} {'micro':>5} {'step s':>8} {'tok/s':>10} {'MFU':>7} {'peak GiB':>9} "
          f"{'boundary ms':>12} {'time vs ' + next(iter(next(iter(results.values())))):>14} {'mem vs same':>12} "
          f"{'tok/s vs HF':>12} {'tok/s vs bf16':>13} {'fp8 layers':>10}")
    for model, runs in results.items():
        base = next(iter(runs.values()))
        for opt, r in runs.items():
            hf = results.get("hf", {}).get(opt)
            mem_ratio = r["peak_mem_gib"] / base["peak_mem_gib"] if "peak_mem_gib" in r else None
            vs_hf = r["tokens_per_s"] / hf["tokens_per_s"] if hf and model != "hf" else None
            bf16 = results.get("ours", {}).get(opt) if model == "ours_fp8" else None
            vs_bf16 = r["tokens_per_s"] / bf16["tokens_per_s"] if bf16 else None
            micro = r.get("micro_batch", args.micro_batch)
            show(f"{model:<8} {opt:<14} {micro:>5} {r['step_s']:>8.3f} {r['tokens_per_s']:>10.0f} {_fmt(r.get('mfu'), '.1%'):>7} "
                  f"{_fmt(r.get('peak_mem_gib'), '.2f'):>9} {_fmt(r.get('boundary_ms'), '.1f'):>12} "
                  f"{r['step_s'] / base['step_s']:>14.3f} {_fmt(mem_ratio, '.3f'):>12} {_fmt(vs_hf, '.3f'):>12} "
                  f"{_fmt(vs_bf16, '.3f'):>13} {r.get('float8_layers', 0):>10}")
    phases = [(m, o, r["peak_gib_by_phase"]) for m, runs in results.items() for o, r in runs.items()
              if "peak_gib_by_phase" in r]
    if phases:
        show("peak GiB by phase: " + "; ".join(f"{m}/{o} " + " ".join(f"{k} {v:.1f}" for k, v in p.items())
                                                for m, o, p in phases))


def main(argv: Optional[List[str]] = None) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Run the grid of models x optimizers and print it; returns {model: {optimizer: measurements}}."""
    args = parse_args(argv, __doc__)
    try:
        device = resolve_device(args.device)
    except ValueError:
        raise SystemExit(f"--device {args.device}: no GPU is visible; use --device cpu") from None
    models = names(args.models, MODELS, "--models")
    if args.float8 and "ours" in models and "ours_fp8" not in models:
        models.insert(models.index("ours") + 1, "ours_fp8")
    optimizers = names(args.optimizers, OPTIMIZERS, "--optimizers")
    if args.json:
        show(json.dumps(run_one(models[0], optimizers[0], args, device)))
        return {}
    argv = sys.argv[1:] if argv is None else argv
    isolated = not args.in_process and len(models) * len(optimizers) > 1
    results: Dict[str, Dict[str, Dict[str, float]]] = {}
    for m in models:
        for o in optimizers:
            results.setdefault(m, {})[o] = _run_isolated(m, o, argv) if isolated else run_in_process(m, o, args, device)
    print_table(results, args, device)
    if args.json_out:
        env = environment(device)
        record = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "device": env["device"], "environment": env, "results": results}
        args.json_out.write_text(json.dumps(record, indent=1) + "\n")
    return results
