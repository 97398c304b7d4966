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
    python scripts/nexus_precision.py --run RUN_DIR     # a trained run's exported model (RUN_DIR/hf) and data
    python scripts/nexus_precision.py --preset llama_1b --device cuda   # real FP8 matmuls on an FP8 GPU

Prints per r and precision: cos(A, A_fp64), |A| / |A_fp64|, and |A_fp64| / |Delta_fp64| (the alignment
term's share of the pseudo-gradient). Without --run: random initialization and random tokens; with it,
the run's weights and windows of its held-out text (the data of its config.yaml). On CPU, FP8 is
emulated: operands rounded to FP8 as on a GPU, multiplied in fp32. The pseudo-gradients are gathered in
host memory as fp64 vectors (four of the model's size at once: about 35 GB at 1B).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from nexus_pretrain.config import ModelConfig
from nexus_pretrain.model import float8
from nexus_pretrain.model.llama import Llama
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.optim.inner_step import step_ratio, weight_scale
from nexus_pretrain.optim.nexus import Nexus

PRECISIONS = ("fp64", "fp32", "bf16", "fp8")
"""fp64: the reference; fp32: no autocast; bf16: bf16 autocast; fp8: bf16 autocast and FP8 linears (the
defaults of model.float8 with every linear converted; emulated off the GPU)."""


def pseudo_gradient(args, state: Dict[str, torch.Tensor], batches: List[torch.Tensor], precision: str,
                    variant: str, gamma: float, device: torch.device) -> torch.Tensor:
    """Nexus's (or the parallel variant's) pseudo-gradient of one window of ``batches`` from the weights
    ``state``, with the forward in ``precision`` on ``device``, as one fp64 vector in host memory."""
    with torch.device(device):
        model = Llama(args)
    model.load_state_dict(state)
    if precision == "fp64":
        model = model.double()
    if precision == "fp8":
        float8.convert(model, "tensorwise", min_dim=0, emulate=device.type != "cuda")
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision in ("bf16", "fp8")
                else contextlib.nullcontext())
    nexus = Nexus(torch.optim.SGD(model.parameters(), lr=0.0), inner_lr=gamma, variant=variant)
    for batch in batches:
        batch = batch.to(device)
        with autocast:
            loss = model(batch[:, :-1], batch[:, 1:]).mean()
        loss.backward()
        nexus.micro_step()
    nexus.step()  # the pseudo-gradient lands in .grad; the outer step (lr 0) leaves the weights
    return torch.cat([p.grad.flatten().double().cpu() for p in model.parameters()])


def alignment_term(args, state, batches, gamma: float, precision: str,
                   device: torch.device = torch.device("cpu")) -> Tuple[torch.Tensor, torch.Tensor]:
    """(Nexus's pseudo-gradient, its alignment term: it minus the parallel variant's) in ``precision``."""
    delta = pseudo_gradient(args, state, batches, precision, "nexus", gamma, device)
    return delta, delta - pseudo_gradient(args, state, batches, precision, "parallel", gamma, device)


def random_setup(a: argparse.Namespace):
    """(model args, weights, batches) of a random model (--preset, or --dim/--layers) on random tokens."""
    shape = (ModelConfig(preset=a.preset, attention="sdpa") if a.preset else  # SDPA: the one that takes fp64
             ModelConfig(preset="tiny", attention="sdpa", dim=a.dim, n_layers=a.layers, n_heads=4, n_kv_heads=2,
                         ffn_dim=4 * a.dim))
    args = resolve_model_args(shape, a.vocab, a.seq_len)
    state = Llama(args).state_dict()
    gen = torch.Generator().manual_seed(a.seed + 1)
    batches = [torch.randint(0, a.vocab, (a.batch, a.seq_len + 1), generator=gen) for _ in range(a.inner_steps)]
    return args, state, batches


def run_setup(a: argparse.Namespace):
    """(model args, weights, batches) of a run: its exported model and consecutive windows of its held-out
    text, domain after domain, at the run's sequence length."""
    from omegaconf import OmegaConf  # noqa: PLC0415 (only for --run)

    from nexus_pretrain.evaluation.heldout import current_data_config  # noqa: PLC0415
    from nexus_pretrain.model.hf import import_hf  # noqa: PLC0415 (transformers: only for --run)
    from nexus_pretrain.run_data import build_data  # noqa: PLC0415

    cfg = OmegaConf.load(a.run / "config.yaml")
    data_cfg = current_data_config(cfg.data)
    seq_len = int(data_cfg.seq_len)
    model = import_hf(a.run / "hf", max_seq_len=seq_len)
    tokens = torch.cat([torch.as_tensor(s[: len(s) // (seq_len + 1) * (seq_len + 1)].astype("int64"))
                        for s in build_data(data_cfg, int(cfg.trainer.seed)).val_streams.values()])
    windows = tokens.view(-1, seq_len + 1)
    needed = a.batch * a.inner_steps
    if len(windows) < needed:
        raise SystemExit(f"--run {a.run}: {len(windows)} held-out windows, fewer than --batch x --inner-steps = {needed}")
    args = dataclasses.replace(model.args, attention="sdpa")  # SDPA: the one that takes fp64
    return args, model.state_dict(), list(windows[:needed].split(a.batch))


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a @ b / (a.norm() * b.norm())).item()


def main(argv: Optional[List[str]] = None) -> List[dict]:
    """Measure and print the alignment term's survival per step ratio and precision."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="a model preset (e.g. llama_1b) instead of --dim/--layers")
    p.add_argument("--device", default="cpu", help="cpu (FP8 emulated) or cuda (FP8 matmuls on an FP8 GPU)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch", type=int, default=8, help="sequences per inner batch")
    p.add_argument("--inner-steps", type=int, default=8, help="K, inner batches per window")
    p.add_argument("--ratios", default="1.5e-5,1e-4,1e-3",
                   help="displacements per inner step relative to the weights' rms (1.5e-5: gamma 0.01 at 1B)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", type=Path, help="a run directory: its exported model and held-out text instead of "
                                            "a random model (--dim, --layers, --vocab, --seq-len then unused)")
    p.add_argument("--json-out", type=Path)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    args, state, batches = run_setup(a) if a.run else random_setup(a)
    n_params, rms = weight_scale(state.values())
    print(f"{n_params:,} parameters, weight rms {rms:.4f}, K={len(batches)}, "
          f"{batches[0].shape[0]} x {batches[0].shape[1] - 1} tokens per inner batch")
    device = torch.device(a.device)
    rows = []
    for ratio in (float(r) for r in a.ratios.split(",")):
        gamma = ratio / step_ratio(1.0, n_params, rms)  # the inner step length giving this ratio
        ref_delta, ref = alignment_term(args, state, batches, gamma, "fp64", device)
        row = {"ratio": ratio, "gamma": gamma, "alignment_share": (ref.norm() / ref_delta.norm()).item()}
        del ref_delta
        for precision in PRECISIONS[1:]:
            alignment = alignment_term(args, state, batches, gamma, precision, device)[1]
            row[precision] = {"cos": cosine(alignment, ref), "norm_ratio": (alignment.norm() / ref.norm()).item()}
        rows.append(row)
        print(f"r={ratio:<8g} gamma={gamma:<9.3g} |A|/|Delta| (fp64) {row['alignment_share']:.2e}   " +
              "   ".join(f"{q}: cos {row[q]['cos']:6.3f}, |A| x{row[q]['norm_ratio']:.2f}" for q in PRECISIONS[1:]))
    if a.json_out:
        recorded = {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()}
        a.json_out.write_text(json.dumps({"args": recorded, "parameters": n_params,
                                          "weight_rms": rms, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
