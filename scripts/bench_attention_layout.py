"""Transformer-block forward+backward time, compiled as the trainer compiles it, for ways of laying out
the attention projections around RoPE: a benchmark script (CUDA), printing each variant's time and its
ratio to the model's current block.

Variants: ``current`` (model/llama.py: one wqkv weight applied as three matmuls on its row blocks);
``one_matmul`` (one matmul with the whole wqkv weight, its output split into q, k, v: the backward then
concatenates their gradients, which Inductor fuses with RoPE's backward); ``separate`` (wq, wk, wv
modules).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from nexus_pretrain.model.llama import Block, ModelArgs, apply_rope, compile_region, rope_cache
from nexus_pretrain.model.presets import PRESETS


class SeparateProjections(nn.Module):
    """Attention with wq, wk, wv instead of the fused wqkv."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = apply_rope(self.wq(x).view(b, t, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(self.wk(x).view(b, t, self.n_kv_heads, self.head_dim), cos, sin)
        v = self.wv(x).view(b, t, self.n_kv_heads, self.head_dim)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                             enable_gqa=self.n_kv_heads != self.n_heads).transpose(1, 2)
        return self.wo(out.reshape(b, t, -1))


def block_ms(preset: str, micro_batch: int, seq_len: int, variant: str, iters: int) -> float:
    """Median ms of one compiled block's forward+backward under bf16 autocast with fp32 weights."""
    args = ModelArgs(**PRESETS[preset], vocab_size=32000, max_seq_len=seq_len)
    torch.manual_seed(0)
    with torch.device("cuda"):
        block = Block(args)
        if variant == "separate":
            block.attention = SeparateProjections(args)
        elif variant == "one_matmul":
            proj = block.attention.wqkv
            proj.forward = lambda x: F.linear(x, proj.weight).split(proj.sizes, dim=-1)
        cos, sin = (t.cuda() for t in rope_cache(args.head_dim, seq_len, args.rope_theta))
    torch._dynamo.reset()
    forward = compile_region(block.forward)
    x = torch.randn(micro_batch, seq_len, args.dim, device="cuda", requires_grad=True)
    times = []
    for i in range(iters + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = forward(x, cos, sin)
        out.float().square().mean().backward()
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shapes", default="llama_130m:16,llama_1b:8", help="preset:micro_batch pairs")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--variants", default="current,one_matmul,separate")
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    for shape in a.shapes.split(","):
        preset, micro = shape.split(":")
        base = None
        for variant in a.variants.split(","):
            ms = block_ms(preset, int(micro), a.seq_len, variant, a.iters)
            base = base or ms
            print(f"{preset} micro {micro} {variant:<12} block fwd+bwd {ms:7.3f} ms  x{ms / base:.3f}", flush=True)


if __name__ == "__main__":
    main()
