"""nexus-bench's command line: its arguments, checked once, and what they imply (each model's batching, the
Inductor options of our regions)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from nexus_pretrain.bench.models import MODELS
from nexus_pretrain.config import ModelConfig, OptimConfig
from nexus_pretrain.model.float8 import DEFAULT_FAST_ACCUM, DEFAULT_HEAD, DEFAULT_MIN_DIM, FLOAT8_MODES, FLOAT8_RECIPES
from nexus_pretrain.model.llama import INDUCTOR_OPTIONS
from nexus_pretrain.model.presets import RESIDUAL_DTYPES

OPTIMIZERS = {
    "adamw": OptimConfig(name="adamw"),
    "muon": OptimConfig(name="muon", weight_decay=0.1),
    "nexus": OptimConfig(name="nexus"),
    "nexus_norm_per_param": OptimConfig(name="nexus"),  # one norm kernel per gradient (see optim/grad_norm.py)
    "nexus_eager_step": OptimConfig(name="nexus"),  # with --compile, the inner step left uncompiled
    "nexus_offload": OptimConfig(name="nexus", offload_anchor=True),
    "nexus_muon": OptimConfig(name="nexus", outer="muon"),
}


def parse_args(argv: Optional[List[str]], description: str) -> argparse.Namespace:
    """nexus-bench's arguments, checked (a bad value exits with one line naming the fix)."""
    p = argparse.ArgumentParser(prog="nexus-bench", description=description)
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
                   help="untimed optimizer steps first (compile, optimizer state), each of one inner batch's "
                        "micro-batches and at least two (at most accum)")
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
    p.add_argument("--float8-cache-weights", nargs="?", const="true", choices=FLOAT8_MODES,
                   default=ModelConfig.float8_cache_weights,
                   help="model.float8_cache_weights: keep each FP8 weight until the optimizer changes it (true "
                        "when named without a value; default: %(default)s, as in the config)")
    p.add_argument("--float8-cast-twice", action="store_true",
                   help="leave each FP8 layer's input and weight to torchao, which casts them again in backward "
                        "(model/float8.py CAST_ONCE; to measure what casting once gives)")
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


def names(value: str, known, flag: str) -> List[str]:
    """The names of a comma list (--models, --optimizers), each one of ``known``."""
    chosen = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        raise SystemExit(f"{flag}: unknown {unknown or value!r}; choose from {', '.join(known)}")
    return chosen


def batching(args: argparse.Namespace, model_name: str) -> tuple[int, int]:
    """(sequences per micro-batch, micro-batches per step) of one model: the HF model's own micro-batch
    when --hf-micro-batch is given, with the accumulation that keeps the global batch."""
    if model_name == "hf" and args.hf_micro_batch != args.micro_batch:
        return args.hf_micro_batch, args.global_batch // args.hf_micro_batch
    return args.micro_batch, args.accum
