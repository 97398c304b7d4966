"""Where FP8 training pays, layer by layer: forward + backward of each distinct linear layer of a
preset (fused q/k/v, attention output, fused gate/up, down projection; the output head with --head) at
the model's micro-batch, compiled, as the trainer runs it (fp32 weight, bf16 autocast, the weight
gradient accumulated), in bf16 and in FP8 (torchao, each recipe). Prints each layer's time and FP8/bf16
speed-up against the smaller of its two sizes, and per recipe the smallest such size from which every
measured layer gains: what model.float8_min_dim's default (nexus_pretrain/model/float8.py
DEFAULT_MIN_DIM) stands for. Each layer is compiled afresh (torch._dynamo.reset between layers: all
layers share the linear's forward, whose recompilations Dynamo caps at 8 and then runs eagerly).

    python scripts/bench_float8_layers.py [--presets llama_520m:16,llama_1b:16,llama_3b:4] [--head]
        [--recipes tensorwise,rowwise] [--json-out layers.json]

--device cpu --eager runs the same code on emulated FP8 with a few tokens (a check of the script).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

from nexus_pretrain.config import ModelConfig
from nexus_pretrain.model import float8
from nexus_pretrain.model.llama import Llama, compile_region
from nexus_pretrain.model.presets import resolve_model_args

LAYERS = ("attention.wqkv", "attention.wo", "feed_forward.w13", "feed_forward.w2")
"""The linear layers of a block, as the FP8 conversion sees them (q/k/v and gate/up each one matmul)."""


def layer_shapes(preset: str, vocab: int, seq_len: int, head: bool) -> Dict[str, tuple]:
    """{layer name: (in_features, out_features)} of one block of a preset (and its output head)."""
    args = resolve_model_args(ModelConfig(preset=preset), vocab, seq_len)
    with torch.device("meta"):
        model = Llama(args)
    shapes = {name: (model.layers[0].get_submodule(name).in_features, model.layers[0].get_submodule(name).out_features)
              for name in LAYERS}
    if head:
        shapes["output"] = (model.output.in_features, model.output.out_features)
    return shapes


def time_layer(k: int, n: int, tokens: int, recipe: Optional[str], device: torch.device, iters: int,
               compile: bool = True) -> float:
    """Median milliseconds of one (compiled) forward + backward of a (k -> n) linear layer over ``tokens``
    rows; recipe None: bf16 (autocast), else FP8 with that recipe ("+fast": fast accumulation in the
    backward matmuls too, model.float8_fast_accum)."""
    torch._dynamo.reset()
    holder = nn.Sequential(nn.Linear(k, n, bias=False)).to(device)
    if recipe is not None:
        name, _, fast = recipe.partition("+")
        float8.convert(holder, name, min_dim=0, emulate=device.type != "cuda", fast_accum=fast == "fast")
    layer = compile_region(holder[0]) if compile else holder[0]
    x = torch.randn(tokens, k, device=device, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(tokens, n, device=device, dtype=torch.bfloat16)

    def run() -> None:
        x.grad = None  # the input's gradient flows on in a model; the weight's accumulates, as here
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = layer(x)
        out.backward(grad)

    for _ in range(3):  # compile, then warm
        run()
    if device.type != "cuda":
        start = time.perf_counter()
        run()
        return (time.perf_counter() - start) * 1e3
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def threshold(rows: List[dict], recipe: str) -> Optional[float]:
    """The smallest min_dim (smaller size of a layer) from which every measured layer (the head aside)
    is faster in FP8; None when the largest one is not."""
    rows = sorted((r for r in rows if r["layer"] != "output"), key=lambda r: r["min_dim"])
    best = None
    for i in range(len(rows) - 1, -1, -1):
        if rows[i][f"speedup_{recipe}"] <= 1.0:
            break
        best = rows[i]["min_dim"]
    return best


def main(argv: Optional[List[str]] = None) -> List[dict]:
    """Measure every layer of the presets asked for; print the table and the thresholds."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="llama_520m:16,llama_1b:16,llama_3b:4",
                   help="comma list of PRESET:MICRO_BATCH (sequences per micro-batch)")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--recipes", default="tensorwise,rowwise",
                   help="comma list of FP8 recipes; RECIPE+fast adds fast accumulation in the backward matmuls")
    p.add_argument("--head", action="store_true", help="also the output head (of the first preset)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--device", default="cuda")
    p.add_argument("--eager", action="store_true", help="no torch.compile (a quick check of the script on CPU)")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    recipes = [r for r in args.recipes.split(",") if r]
    rows: List[dict] = []
    for i, spec in enumerate(args.presets.split(",")):
        preset, micro = spec.split(":")
        tokens = int(micro) * args.seq_len if device.type == "cuda" else 64
        for name, (k, n) in layer_shapes(preset, args.vocab, args.seq_len, args.head and i == 0).items():
            row = {"preset": preset, "layer": name, "in": k, "out": n, "tokens": tokens,
                   "min_dim": min(k, n), "bf16_ms": time_layer(k, n, tokens, None, device, args.iters,
                                                                                      not args.eager)}
            for recipe in recipes:
                row[f"{recipe}_ms"] = time_layer(k, n, tokens, recipe, device, args.iters, not args.eager)
                row[f"speedup_{recipe}"] = row["bf16_ms"] / row[f"{recipe}_ms"]
            rows.append(row)
            print(f"{preset:<11} {name:<17} {k:>5} -> {n:<6} min {row['min_dim']:>5}  tokens {tokens:>6}  "
                  f"bf16 {row['bf16_ms']:7.3f} ms  " +
                  "  ".join(f"{r} {row[f'{r}_ms']:7.3f} ms x{row[f'speedup_{r}']:.3f}" for r in recipes), flush=True)
    found = {recipe: threshold(rows, recipe) for recipe in recipes}
    print("FP8 gains from min(in, out) >= " + ", ".join(f"{r}: {v}" for r, v in found.items()) +
          f" (model/float8.py DEFAULT_MIN_DIM: {float8.DEFAULT_MIN_DIM})")
    if args.json_out:
        args.json_out.write_text(json.dumps({"device": torch.cuda.get_device_name(device) if device.type == "cuda"
                                             else "cpu", "torch": torch.__version__, "rows": rows,
                                             "min_dim": found}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
