"""The matrix multiplications of one training micro-batch of our Llama, as shapes: what the 6N of MFU
counts, so that a GPU's speed on exactly these shapes bounds the MFU the model can reach."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from nexus_pretrain.model.llama import ModelArgs


@dataclass(frozen=True)
class Gemm:
    """``count`` products of an (m, k) and a (k, n) matrix, laid out as F.linear's autograd runs them."""

    name: str  # e.g. "w13 wgrad"
    m: int
    k: int
    n: int
    count: int
    transpose_a: bool = False  # the left operand is stored (k, m), as the weight gradient's dY is
    transpose_b: bool = False  # the right operand is stored (n, k), as the forward's weight is

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n * self.count


def linear_gemms(name: str, in_features: int, out_features: int, tokens: int, count: int) -> List[Gemm]:
    """Forward Y = X Wᵀ, input gradient dX = dY W and weight gradient dW = dYᵀ X of a bias-free linear."""
    return [
        Gemm(f"{name} fwd", tokens, in_features, out_features, count, transpose_b=True),
        Gemm(f"{name} dgrad", tokens, out_features, in_features, count),
        Gemm(f"{name} wgrad", out_features, tokens, in_features, count, transpose_a=True),
    ]


def model_gemms(args: ModelArgs, tokens: int) -> List[Gemm]:
    """Every GEMM of a forward and backward over ``tokens`` tokens (attention's own products excluded:
    they are SDPA's, and MFU counts them apart as 12·L·dim·S). The q, k and v projections are three
    GEMMs (QKVProjection); the output head's input gradient is computed too, as training does."""
    q, kv = args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim
    layers = args.n_layers
    gemms: List[Gemm] = []
    for name, fan_in, fan_out in (("wq", args.dim, q), ("wk", args.dim, kv), ("wv", args.dim, kv),
                                  ("wo", q, args.dim), ("w13", args.dim, 2 * args.ffn_dim),
                                  ("w2", args.ffn_dim, args.dim)):
        gemms += linear_gemms(name, fan_in, fan_out, tokens, layers)
    return gemms + linear_gemms("output", args.dim, args.vocab_size, tokens, 1)
