"""How much of Nexus's alignment term survives reduced-precision forwards (bf16 autocast, FP8).

Nexus's pseudo-gradient is the parallel variant's (gamma times the sum of the normalized inner gradients,
all taken at the anchor) plus an alignment term A = Delta_nexus - Delta_parallel of order gamma^2: the
part that the inner steps' displacement contributes (docs/theory.md). Each inner step moves a weight by
about gamma / sqrt(#params), far below one bf16 or FP8 rounding step of the weight, so a forward that
rounds the fp32 master weights sees the displacement only through the few weights that cross a rounding
boundary. This script measures, on one model and one window of inner batches, A under each precision
against A computed in fp64, for inner step sizes given as r, the displacement per step relative to the
weights' rms (gamma = r * sqrt(#params) * rms):

    python scripts/nexus_precision.py [--dim 256] [--layers 2] [--ratios 1.5e-5,1e-4,1e-3] [--json-out F]

Prints per r and precision: cos(A, A_fp64), |A| / |A_fp64|, and |A_fp64| / |Delta_fp64| (the alignment
term's share of the pseudo-gradient). Random initialization and random tokens, on CPU (FP8 emulated:
operands rounded to FP8 as on a GPU, multiplied in fp32); the curvature of a trained model is larger,
so the share and the survival there are for a GPU run on a checkpoint to measure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Dict, List, Optional

import torch

from nexus_pretrain.config import ModelConfig
from nexus_pretrain.model import float8
from nexus_pretrain.model.llama import Llama
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.optim.nexus import Nexus

PRECISIONS = ("fp64", "fp32", "bf16", "fp8")
"""fp64: the reference; fp32: no autocast; bf16: bf16 autocast; fp8: bf16 autocast and FP8 linears (emulated)."""


def pseudo_gradient(args, state: Dict[str, torch.Tensor], batches: List[torch.Tensor], precision: str,
                    variant: str, gamma: float) -> torch.Tensor:
    """Nexus's (or the parallel variant's) pseudo-gradient of one window of ``batches`` from the weights
    ``state``, with the forward in ``precision``, as one fp64 vector."""
    model = Llama(args)
    model.load_state_dict(state)
    if precision == "fp64":
        model = model.double()
    if precision == "fp8":
        float8.convert(model, "tensorwise", min_dim=0, emulate=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision in ("bf16", "fp8") else contextlib.nullcontext()
    nexus = Nexus(torch.optim.SGD(model.parameters(), lr=0.0), inner_lr=gamma, variant=variant)
    for batch in batches:
        with autocast:
            loss = model(batch[:, :-1], batch[:, 1:]).mean()
        loss.backward()
        nexus.micro_step()
    nexus.step()  # the pseudo-gradient lands in .grad; the outer step (lr 0) leaves the weights
    return torch.cat([p.grad.flatten().double() for p in model.parameters()])


def alignment_terms(args, state, batches, gamma: float, precisions=PRECISIONS) -> Dict[str, Dict[str, torch.Tensor]]:
    """{precision: {"delta": Nexus's pseudo-gradient, "alignment": it minus the parallel variant's}}."""
    out = {}
    for precision in precisions:
        delta = pseudo_gradient(args, state, batches, precision, "nexus", gamma)
        out[precision] = {"delta": delta,
                          "alignment": delta - pseudo_gradient(args, state, batches, precision, "parallel", gamma)}
    return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a @ b / (a.norm() * b.norm())).item()


def main(argv: Optional[List[str]] = None) -> List[dict]:
    """Measure and print the alignment term's survival per step ratio and precision."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=8, help="sequences per inner batch")
    p.add_argument("--inner-steps", type=int, default=8, help="K, inner batches per window")
    p.add_argument("--ratios", default="1.5e-5,1e-4,1e-3",
                   help="displacements per inner step relative to the weights' rms (1.5e-5: gamma 0.01 at 1B)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-out", type=Path)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    args = resolve_model_args(ModelConfig(preset="tiny", dim=a.dim, n_layers=a.layers, n_heads=4, n_kv_heads=2,
                                          ffn_dim=4 * a.dim), a.vocab, a.seq_len)
    model = Llama(args)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    n_params = sum(q.numel() for q in model.parameters())
    rms = torch.cat([q.flatten() for q in model.parameters() if q.dim() == 2]).pow(2).mean().sqrt().item()
    gen = torch.Generator().manual_seed(a.seed + 1)
    batches = [torch.randint(0, a.vocab, (a.batch, a.seq_len + 1), generator=gen) for _ in range(a.inner_steps)]
    print(f"{n_params:,} parameters, weight rms {rms:.4f}, K={a.inner_steps}, "
          f"{a.batch} x {a.seq_len} tokens per inner batch")
    rows = []
    for ratio in (float(r) for r in a.ratios.split(",")):
        gamma = ratio * n_params ** 0.5 * rms
        terms = alignment_terms(args, state, batches, gamma)
        ref = terms["fp64"]
        row = {"ratio": ratio, "gamma": gamma,
               "alignment_share": (ref["alignment"].norm() / ref["delta"].norm()).item()}
        for precision in PRECISIONS[1:]:
            row[precision] = {"cos": cosine(terms[precision]["alignment"], ref["alignment"]),
                              "norm_ratio": (terms[precision]["alignment"].norm() / ref["alignment"].norm()).item()}
        rows.append(row)
        print(f"r={ratio:<8g} gamma={gamma:<9.3g} |A|/|Delta| (fp64) {row['alignment_share']:.2e}   " +
              "   ".join(f"{q}: cos {row[q]['cos']:6.3f}, |A| x{row[q]['norm_ratio']:.2f}" for q in PRECISIONS[1:]))
    if a.json_out:
        a.json_out.write_text(json.dumps({"args": vars(a) | {"json_out": str(a.json_out)}, "parameters": n_params,
                                          "weight_rms": rms, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
