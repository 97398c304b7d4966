"""A Llama-style decoder in one file: RMSNorm, RoPE, grouped-query attention, SwiGLU.

Query/key/value and gate/up projections are each stored as one weight (``wqkv``, ``w13``); gate/up
run as one matmul, query/key/value as three (see QKVProjection). ``model/hf.py`` splits the weights when
exporting to Hugging Face's LlamaForCausalLM layout.
RoPE follows Hugging Face's rotate-half convention so exported weights need no permutation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from nexus_pretrain.model.presets import RESIDUAL_DTYPES

try:  # flash-attn is optional; SDPA is the fallback everywhere.
    from flash_attn import flash_attn_func
except ImportError:  # pragma: no cover - depends on the machine
    flash_attn_func = None


@dataclass
class ModelArgs:
    """A fully resolved model shape (see presets.py for the named sizes)."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    init_std: float = 0.02
    attention: str = "auto"
    residual_dtype: str = "bfloat16"
    """"bfloat16": under autocast the embedding output is cast to the autocast dtype, so the residual
    stream and the activations saved for backward are bf16 on every backend, as FSDP2's and DeepSpeed's
    bf16 weights make them anyway. "embedding": the residual stream has the embedding's dtype, fp32
    under backend single's autocast."""
    float8: str = "false"
    """model.float8 (false, true, auto): the backends swap the blocks' large linear layers for torchao's
    FP8 training linears before compiling (model/float8.py)."""
    float8_recipe: str = "tensorwise"
    float8_min_dim: int | None = None
    """Smallest input and output size of a linear layer that converts; None: the measured default."""
    float8_fast_accum: bool | None = None
    """FP8 backward matmuls accumulate in the fast, lower-precision mode too; None: the measured default."""
    float8_head: bool | None = None
    """The output head's matmul in FP8 as well (when its sizes qualify); None: the measured default."""
    float8_eval: str = "fp8"
    """model.float8_eval: evaluations through the FP8 layers as they train (fp8) or through bf16 matmuls."""
    float8_cache_weights: str = "false"
    """model.float8_cache_weights (false, true, auto): FP8 weights kept until the weights change
    (model/float8_weights.py)."""

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"model.dim={self.dim} is not divisible by model.n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"model.n_heads={self.n_heads} is not divisible by model.n_kv_heads={self.n_kv_heads}")
        if self.residual_dtype not in RESIDUAL_DTYPES:
            raise ValueError(f"model.residual_dtype={self.residual_dtype!r} is not one of {', '.join(RESIDUAL_DTYPES)}")
        if self.head_dim % 2:
            raise ValueError(f"head dim {self.head_dim} must be even for RoPE; change model.dim or model.n_heads")


def rope_cache(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (max_seq_len, head_dim), Hugging Face's rotate-half layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x of shape (B, T, H, D) by position; cos/sin are (T, D)."""
    cos, sin = cos[:, None, :], sin[:, None, :]
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class QKVProjection(nn.Linear):
    """The query, key and value projections as one (q; k; v) weight, applied as three matmuls on its
    row blocks. The outputs are then separate tensors, so backward needs no concatenation of their
    gradients: Inductor fuses that concatenation with RoPE's backward into a gather that took 11% of a
    130M step. On an H100 three matmuls took a 130M block's forward+backward from 5.73 to 5.20 ms and
    left 1B unchanged (scripts/bench_attention_layout.py). One module keeps the checkpoint layout and
    DeepSpeed ZeRO-3's per-module parameter gathering."""

    def __init__(self, dim: int, sizes: list[int]):
        super().__init__(dim, sum(sizes), bias=False)
        self.sizes = sizes

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.linear(x, w) for w in self.weight.split(self.sizes)]


class Attention(nn.Module):
    """Causal grouped-query self-attention with RoPE."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.use_flash = args.attention == "flash" or (args.attention == "auto" and flash_attn_func is not None)
        if args.attention == "flash" and flash_attn_func is None:
            raise ValueError("model.attention=flash but flash-attn is not installed; use model.attention=sdpa")
        q_size, kv_size = args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim
        self.wqkv = QKVProjection(args.dim, [q_size, kv_size, kv_size])
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        q, k, v = self.wqkv(x)
        q = apply_rope(q.view(bsz, seqlen, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(k.view(bsz, seqlen, self.n_kv_heads, self.head_dim), cos, sin)
        v = v.view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        if self.use_flash and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
            out = flash_attn_func(q, k, v, causal=True)
        else:
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                enable_gqa=self.n_kv_heads != self.n_heads,
            ).transpose(1, 2)
        return self.wo(out.reshape(bsz, seqlen, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(x W1) * x W3), with W1 and W3 fused into w13."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w13 = nn.Linear(args.dim, 2 * args.ffn_dim, bias=False)
        self.w2 = nn.Linear(args.ffn_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = nn.RMSNorm(args.dim, eps=args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = nn.RMSNorm(args.dim, eps=args.norm_eps)
        self.feed_forward = FeedForward(args)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    """Decoder-only language model: token ids (B, T) -> logits (B, T, vocab), or with targets (B, T)
    the mean next-token loss of each sequence (B,) without handing the logits back."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.activation_checkpointing = False
        self.recompute_every = 1
        """With activation_checkpointing, recompute every n-th block (1: all; 2: half, ...)."""
        self.head_losses = head_sequence_losses
        """The final norm, output head and loss; compile_regions swaps in a compiled copy."""
        self.head_linear: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.linear
        """The output head's matmul (x, weight) -> x @ weight.T; model/float8.py swaps in an FP8 one."""
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = nn.RMSNorm(args.dim, eps=args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        if args.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_cache(args.head_dim, args.max_seq_len, args.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights; residual output projections scaled by 1/sqrt(2 n_layers)."""
        std = self.args.init_std
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.args.n_layers))
            else:
                nn.init.normal_(p, std=std)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        seqlen = tokens.shape[1]
        if seqlen > self.args.max_seq_len:
            raise ValueError(f"sequence length {seqlen} exceeds model.max_seq_len={self.args.max_seq_len}")
        cos, sin = self.rope_cos[:seqlen], self.rope_sin[:seqlen]
        h = self.tok_embeddings(tokens)
        if self.args.residual_dtype == "bfloat16":
            h = to_autocast_dtype(h)
        for i, layer in enumerate(self.layers):
            if self.activation_checkpointing and self.training and i % self.recompute_every == 0:
                h = checkpoint(layer, h, cos, sin, use_reentrant=False)
            else:
                h = layer(h, cos, sin)
        if targets is not None:
            return self.head_losses(h, self.norm.weight, self.norm.eps, self.output.weight, targets, self.head_linear)
        return self.head_linear(self.norm(h), self.output.weight)


def to_autocast_dtype(x: torch.Tensor) -> torch.Tensor:
    """x in its device's autocast dtype when autocast is on there; otherwise x unchanged."""
    if torch.is_autocast_enabled(x.device.type):
        return x.to(torch.get_autocast_dtype(x.device.type))
    return x


def head_sequence_losses(h: torch.Tensor, norm_weight: torch.Tensor, norm_eps: float | None,
                         output_weight: torch.Tensor, targets: torch.Tensor,
                         linear: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.linear) -> torch.Tensor:
    """Final RMSNorm, output projection (``linear``: bf16, or FP8 with model.float8_head) and each
    sequence's mean loss (sequence_losses), as one function of tensors so that torch.compile can fuse it
    whatever wraps the module (FSDP2, DeepSpeed): compiled, the fp32 logits are never written out."""
    logits = linear(F.rms_norm(h, (h.shape[-1],), norm_weight, norm_eps), output_weight)
    return sequence_losses(logits, targets)


INDUCTOR_OPTIONS = {"triton.prefer_nd_tiling": True, "triton.tile_reductions": True}
"""Inductor options of the compiled regions: pointwise kernels and reductions tiled in two dimensions, for
kernels that read a tensor in one layout and write it in another (FP8's transposed casts, RoPE's). On an
H100 (docs/performance-fp8.md) they took a 1B FP8 step 2.3% faster (three runs each way) and a bf16 step
0.7%; numerics are unchanged up to summation order. They configure GPU code generation only; CPU
compilation ignores them."""


def compile_region(fn: Callable, options: dict | None = None) -> Callable:
    """``fn`` compiled as the trainer compiles its regions: torch.compile with Inductor ``options``
    (None: INDUCTOR_OPTIONS; {}: Inductor's defaults)."""
    return torch.compile(fn, options=INDUCTOR_OPTIONS if options is None else options)


def compile_regions(model: Llama, options: dict | None = None) -> None:
    """Regional compilation: compile each transformer block (compiled once, reused per layer) and the
    norm-head-loss function (compile_region, with ``options``). Each block's forward is compiled, not
    its __call__, so hooks on the block (FSDP2's all-gather and reshard) run eagerly around the region."""
    for block in model.layers:
        block.forward = compile_region(block.forward, options)
    model.head_losses = compile_region(head_sequence_losses, options)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token cross-entropy in fp32."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=ignore_index)


def sequence_losses(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token cross-entropy of each sequence (B,) over its targets other than ``ignore_index``
    (e.g. SFT prompt and padding positions), in fp32; 0 for a row with none."""
    per_token = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none",
                                ignore_index=ignore_index).view(targets.shape)
    counted = (targets != ignore_index).sum(dim=1)
    return per_token.sum(dim=1) / counted.clamp(min=1)


def count_parameters(model: Llama, include_embeddings: bool = False) -> int:
    """Parameter count; by default without the input embedding (the output head counts, as in 6N)."""
    total = sum(p.numel() for p in model.parameters())
    if not include_embeddings and not model.args.tie_embeddings:
        total -= model.tok_embeddings.weight.numel()
    return total


def flops_per_token(args: ModelArgs, seq_len: int, n_params: int) -> float:
    """Training FLOPs per token: 6N plus causal-agnostic attention 12 * L * dim * seq_len."""
    return 6 * n_params + 12 * args.n_layers * args.dim * seq_len
