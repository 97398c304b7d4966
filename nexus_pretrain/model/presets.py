"""Named model sizes. The paper's sizes are non-embedding parameter counts (input embedding and
output head excluded): 130M, 300M, 520M, 1.2B and 2.3B; ``tiny`` is for CPU tests and the demo."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:  # presets are read by config validation, which must not pay for importing torch
    from nexus_pretrain.model.llama import ModelArgs

PRESETS: Dict[str, Dict[str, Any]] = {
    "tiny": dict(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=384),
    "llama_130m": dict(dim=768, n_layers=18, n_heads=12, n_kv_heads=12, ffn_dim=2048),
    "llama_300m": dict(dim=1024, n_layers=24, n_heads=16, n_kv_heads=16, ffn_dim=2816),
    "llama_520m": dict(dim=1280, n_layers=26, n_heads=20, n_kv_heads=20, ffn_dim=3456),
    "llama_1b": dict(dim=2048, n_layers=24, n_heads=16, n_kv_heads=16, ffn_dim=5504),
    "llama_3b": dict(dim=2560, n_layers=34, n_heads=20, n_kv_heads=4, ffn_dim=6912),
    # Not a paper size: the mini reproduction's model (configs/experiment/minirepro.yaml), 25.7M non-embedding.
    "llama_25m": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=8, ffn_dim=1408),
    # Not a paper size: the iso-loss experiment's model (configs/experiment/isoloss.yaml), 2.2M non-embedding,
    # small enough to train to twice the Chinchilla budget many times over on one GPU.
    "llama_2m": dict(dim=192, n_layers=5, n_heads=3, n_kv_heads=3, ffn_dim=512),
}

RESIDUAL_DTYPES = ("bfloat16", "embedding")
"""model.residual_dtype's values (see ModelArgs.residual_dtype)."""

PAPER_SIZES = {"llama_130m": 130e6, "llama_300m": 300e6, "llama_520m": 520e6, "llama_1b": 1.2e9, "llama_3b": 2.3e9}
"""Non-embedding parameter counts the paper's size names stand for."""


def resolve_model_args(model_cfg: Any, vocab_size: int, seq_len: int) -> "ModelArgs":
    """Preset shape, overridden by every non-None field of the model config.

    ``vocab_size`` (the tokenizer's) and ``seq_len`` (the data's) fill vocab_size and max_seq_len
    when the config leaves them unset; the vocabulary is rounded up to a multiple of 64.
    """
    from nexus_pretrain.model.llama import ModelArgs

    if model_cfg.preset not in PRESETS:
        raise ValueError(f"model.preset={model_cfg.preset!r} is not one of {', '.join(PRESETS)}")
    values: Dict[str, Any] = dict(PRESETS[model_cfg.preset])
    values["vocab_size"] = -(-vocab_size // 64) * 64
    values["max_seq_len"] = seq_len
    for f in fields(ModelArgs):
        override = getattr(model_cfg, f.name, None)
        if override is not None:
            values[f.name] = override
    if hasattr(model_cfg, "residual_dtype") and model_cfg.residual_dtype is None:
        values["residual_dtype"] = "embedding"  # what null meant in run configs saved before bf16 became the default
    if values["vocab_size"] < vocab_size:
        raise ValueError(f"model.vocab_size={values['vocab_size']} is smaller than the tokenizer's {vocab_size}")
    return ModelArgs(**values)


def non_embedding_parameters(args: "ModelArgs") -> int:
    """Parameters outside the input embedding and output head, computed from the shape alone."""
    head_dim = args.head_dim
    attention = args.dim * (args.n_heads + 2 * args.n_kv_heads) * head_dim + args.n_heads * head_dim * args.dim
    mlp = 3 * args.dim * args.ffn_dim
    return args.n_layers * (attention + mlp + 2 * args.dim) + args.dim


def mfu_parameters(args: "ModelArgs") -> int:
    """N of MFU's 6N: non_embedding_parameters plus the output head, which counts whether or not it is
    tied to the input embedding (its matmuls run either way); count_parameters of the model agrees."""
    return non_embedding_parameters(args) + args.vocab_size * args.dim
