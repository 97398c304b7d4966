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

from nexus_pretrain.bench.memory import live_bytes_by_site
from nexus_pretrain.bench.models import MODELS, build_model
from nexus_pretrain.bench.profile import profile_step
from nexus_pretrain.config import ModelConfig, OptimConfig
from nexus_pretrain.console import show
from nexus_pretrain.model.float8 import (DEFAULT_FAST_ACCUM, DEFAULT_HEAD, DEFAULT_MIN_DIM, FLOAT8_RECIPES,
                                         float8_layers)
from nexus_pretrain.model.llama import INDUCTOR_OPTIONS, flops_per_token, head_sequence_losses
from nexus_pretrain.model.presets import RESIDUAL_DTYPES, mfu_parameters, resolve_model_args
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.rundir.environment import environment
from nexus_pretrain.train.backends.single import resolve_device
from nexus_pretrain.train.metrics import peak_flops, peak_memory_gib

log = logging.getLogger(__name__)

OPTIMIZERS = {
    "adamw": OptimConfig(name="adamw"),
    "muon": OptimConfig(name="muon", weight_decay=0.1),
    "nexus": OptimConfig(name="nexus"),
    "nexus_norm_per_param": OptimConfig(name="nexus"),  # one norm kernel per gradient (see optim/grad_norm.py)
    "nexus_eager_step": OptimConfig(name="nexus"),  # with --compile, the inner step left uncompiled
    "nexus_offload": OptimConfig(name="nexus", offload_anchor=True),
    "nexus_muon": OptimConfig(name="nexus", outer="muon"),
}


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nexus-bench", description=__doc__)
    p.add_argument("--preset", default="tiny", help="model preset (tiny, llama_130m, ..., llama_3b)")
    p.add_argument("--vocab", type=int, default=32000, help="vocabulary size")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per micro-batch")
    p.add_argument("--hf-micro-batch", type=int,
                   help="the HF model's micro-batch, when ours fits a larger one (needs --global-batch, which "
                        "then sets each model's accumulation; default: --micro-batch)")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--accum", type=int, help="micro-batches per optimizer step (default 4)")
    batch.add_argument("--global-batch", type=int,
                       help="sequences per optimizer step (the paper's is 256); accumulation = this / micro-batch")
    p.add_argument("--inner-steps", type=int,
                   help="Nexus's inner steps per optimizer step (optim.inner_steps, K): every optimizer's "
                        "micro_step comes after each accum/K micro-batches, as in nexus-train (default: accum, "
                        "an inner step per micro-batch as in the paper's Fig. 4, the most Nexus can cost; "
                        "nexus-train's default is 4)")
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed optimizer steps first, of min(accum, 2) micro-batches each (compile, optimizer state)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile: ours per block and the norm-head-loss, as the trainer does; HF whole model")
    p.add_argument("--eager-head", action="store_true",
                   help="with --compile, leave our norm-head-loss uncompiled (to measure what compiling it gives)")
    p.add_argument("--inductor-defaults", action="store_true",
                   help="with --compile, compile our regions with Inductor's default options instead of "
                        "model.llama.INDUCTOR_OPTIONS (to measure what those give)")
    p.add_argument("--inductor-option", action="append", default=[], metavar="KEY=VALUE",
                   help="with --compile, one more Inductor option for our regions, on top of "
                        "model.llama.INDUCTOR_OPTIONS (or Inductor's defaults with --inductor-defaults); "
                        "repeatable, e.g. --inductor-option coordinate_descent_tuning=true")
    p.add_argument("--attention", default="auto", choices=("auto", "sdpa", "flash"),
                   help="our attention kernel (model.attention); HF uses SDPA's default choice")
    p.add_argument("--sdpa-backend", choices=("cudnn", "flash", "efficient"),
                   help="allow only this SDPA backend (both models; default: SDPA's own choice)")
    p.add_argument("--residual-dtype", choices=RESIDUAL_DTYPES, default="bfloat16",
                   help="model.residual_dtype, for both models (HF's through a hook on its embedding); "
                        "embedding: fp32, the residual stream of HF's model as its users run it")
    p.add_argument("--memory-census", choices=("stacks", "blocks"),
                   help="print what holds the live GPU memory at the last forward of the phase step: by "
                        "allocating code (stacks: records every allocation's stack, which slows the host) or "
                        "by block size and state (blocks: timing unchanged)")
    p.add_argument("--activation-checkpointing", type=int, default=0, metavar="N",
                   help="recompute every N-th block in backward (0: none; HF: every layer when N > 0)")
    p.add_argument("--float8", nargs="?", const="tensorwise", choices=FLOAT8_RECIPES,
                   help="also run our model with FP8 training linears (model.float8=true, recipe tensorwise unless "
                        "named) right after the bf16 one, and print the FP8/bf16 ratios")
    p.add_argument("--float8-min-dim", type=int, metavar="N",
                   help="model.float8_min_dim: convert linear layers whose sizes are both >= N "
                        "(default: model/float8.py's)")
    p.add_argument("--float8-fast-accum", action=argparse.BooleanOptionalAction,
                   help="model.float8_fast_accum: the FP8 backward matmuls accumulate in the fast mode too "
                        "(default: model/float8.py's)")
    p.add_argument("--float8-head", action=argparse.BooleanOptionalAction,
                   help="model.float8_head: the output head in FP8 too (default: model/float8.py's)")
    p.add_argument("--models", default="ours", help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--optimizers", default="adamw,nexus", help=f"comma list of {', '.join(OPTIMIZERS)}")
    p.add_argument("--in-process", action="store_true",
                   help="run everything in this process (faster to start; compile caches are dropped between "
                        "runs; default: a fresh process per model and optimizer, so nothing of one run skews the next)")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="after timing, profile one step of each run and write its device-time breakdown to DIR")
    p.add_argument("--json-out", type=Path, help="also write all results as JSON to this file")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a child's result on stdout
    args = p.parse_args(argv)
    # The FP8 settings as the run uses them, so that the table and --json-out record values, not "default".
    args.float8_min_dim = DEFAULT_MIN_DIM if args.float8_min_dim is None else args.float8_min_dim
    args.float8_fast_accum = DEFAULT_FAST_ACCUM if args.float8_fast_accum is None else args.float8_fast_accum
    args.float8_head = DEFAULT_HEAD if args.float8_head is None else args.float8_head
    if args.hf_micro_batch is None:
        args.hf_micro_batch = args.micro_batch
    elif args.global_batch is None and args.hf_micro_batch != args.micro_batch:
        p.error("--hf-micro-batch needs --global-batch (both models then take the same tokens per step)")
    if args.global_batch is not None:
        for flag, micro in (("--micro-batch", args.micro_batch), ("--hf-micro-batch", args.hf_micro_batch)):
            if micro < 1 or args.global_batch % micro:
                p.error(f"--global-batch {args.global_batch} is not a multiple of {flag} {micro}")
        args.accum = args.global_batch // args.micro_batch
    elif args.accum is None:
        args.accum = 4
    for name in ("micro_batch", "hf_micro_batch", "accum", "steps", "seq_len"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.inner_steps is None:
        args.inner_steps = args.accum
    for flag, accum in (("", args.accum), (" (the HF model's)", batching(args, "hf")[1])):
        if args.inner_steps < 1 or accum % args.inner_steps:
            p.error(f"--inner-steps {args.inner_steps} does not divide the {accum} micro-batches per step{flag}; "
                    "pass --inner-steps with a divisor of it")
    try:
        args.inductor_option = dict(_inductor_option(item) for item in args.inductor_option)
    except ValueError as e:
        p.error(str(e))
    return args


def _inductor_option(item: str) -> tuple[str, object]:
    """("key", value) of one --inductor-option KEY=VALUE: true/false as bools, integers and floats as
    numbers, anything else as a string; the key must name an option of torch._inductor.config."""
    import torch._inductor.config as inductor_config

    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ValueError(f"--inductor-option {item!r}: expected KEY=VALUE")
    owner = inductor_config
    *path, last = key.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    if owner is None or not hasattr(owner, last):
        raise ValueError(f"--inductor-option {item!r}: torch._inductor.config has no option {key!r}")
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    for kind in (int, float):
        try:
            return key, kind(text)
        except ValueError:
            pass
    return key, text


def region_inductor_options(args: argparse.Namespace) -> Optional[dict]:
    """The Inductor options of our compiled regions: None (model.llama.INDUCTOR_OPTIONS) unless
    --inductor-defaults or --inductor-option change them."""
    if not args.inductor_defaults and not args.inductor_option:
        return None
    return {**({} if args.inductor_defaults else INDUCTOR_OPTIONS), **args.inductor_option}


def _names(value: str, known, flag: str) -> List[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise SystemExit(f"{flag}: unknown {unknown or value!r}; choose from {', '.join(known)}")
    return names


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


def batching(args: argparse.Namespace, model_name: str) -> tuple[int, int]:
    """(sequences per micro-batch, micro-batches per step) of one model: the HF model's own micro-batch
    when --hf-micro-batch is given, with the accumulation that keeps the global batch."""
    if model_name == "hf" and args.hf_micro_batch != args.micro_batch:
        return args.hf_micro_batch, args.global_batch // args.hf_micro_batch
    return args.micro_batch, args.accum


def run_one(model_name: str, optimizer_name: str, args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """Time args.steps optimizer steps of one model under one optimizer; returns its measurements."""
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
                            float8_fast_accum=args.float8_fast_accum, float8_head=args.float8_head)
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

    for _ in range(args.warmup):
        step(batches[:2])
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
          f"float8_head={args.float8_head} inductor_defaults={args.inductor_defaults} "
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
    args = _parse(argv)
    try:
        device = resolve_device(args.device)
    except ValueError:
        raise SystemExit(f"--device {args.device}: no GPU is visible; use --device cpu") from None
    models = _names(args.models, MODELS, "--models")
    if args.float8 and "ours" in models and "ours_fp8" not in models:
        models.insert(models.index("ours") + 1, "ours_fp8")
    optimizers = _names(args.optimizers, OPTIMIZERS, "--optimizers")
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
