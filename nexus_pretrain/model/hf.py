"""Conversion between our Llama and a Hugging Face ``LlamaForCausalLM`` directory.

Written by hand because the two layouts differ only in names and in our fused projections
(``wqkv`` -> q/k/v_proj, ``w13`` -> gate/up_proj); both use the rotate-half RoPE convention, so no
weight permutation is needed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from safetensors.torch import load_file, save_file

from nexus_pretrain.model.llama import Llama, ModelArgs

WEIGHTS_FILE = "model.safetensors"


def hf_config(args: ModelArgs, eos_token_id: Optional[int] = None) -> Dict[str, Any]:
    """The LlamaConfig fields describing ``args``."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": args.vocab_size,
        "hidden_size": args.dim,
        "intermediate_size": args.ffn_dim,
        "num_hidden_layers": args.n_layers,
        "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.n_kv_heads,
        "head_dim": args.head_dim,
        "max_position_embeddings": args.max_seq_len,
        "rms_norm_eps": args.norm_eps,
        "rope_theta": args.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": args.rope_theta},
        "tie_word_embeddings": args.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": args.init_std,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id,
        "torch_dtype": "float32",
    }


def to_hf_state_dict(model: Llama) -> Dict[str, torch.Tensor]:
    """Our parameters renamed and split into Hugging Face's Llama layout."""
    return hf_tensors(model.args, model.state_dict())


def hf_tensors(args: ModelArgs, sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A state dict of our model (as Llama.state_dict names it) in Hugging Face's Llama layout."""
    q_size, kv_size = args.n_heads * args.head_dim, args.n_kv_heads * args.head_dim
    out = {"model.embed_tokens.weight": sd["tok_embeddings.weight"], "model.norm.weight": sd["norm.weight"]}
    if not args.tie_embeddings:
        out["lm_head.weight"] = sd["output.weight"]
    for i in range(args.n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = sd[ours + "attention.wqkv.weight"].split([q_size, kv_size, kv_size], dim=0)
        gate, up = sd[ours + "feed_forward.w13.weight"].chunk(2, dim=0)
        out.update({
            theirs + "self_attn.q_proj.weight": q,
            theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v,
            theirs + "self_attn.o_proj.weight": sd[ours + "attention.wo.weight"],
            theirs + "mlp.gate_proj.weight": gate,
            theirs + "mlp.up_proj.weight": up,
            theirs + "mlp.down_proj.weight": sd[ours + "feed_forward.w2.weight"],
            theirs + "input_layernorm.weight": sd[ours + "attention_norm.weight"],
            theirs + "post_attention_layernorm.weight": sd[ours + "ffn_norm.weight"],
        })
    return out


def from_hf_state_dict(hf: Dict[str, torch.Tensor], args: ModelArgs) -> Dict[str, torch.Tensor]:
    """Hugging Face Llama weights in our layout (inverse of to_hf_state_dict)."""
    out = {"tok_embeddings.weight": hf["model.embed_tokens.weight"], "norm.weight": hf["model.norm.weight"]}
    out["output.weight"] = hf["model.embed_tokens.weight"] if args.tie_embeddings else hf["lm_head.weight"]
    for i in range(args.n_layers):
        ours, theirs = f"layers.{i}.", f"model.layers.{i}."
        out[ours + "attention.wqkv.weight"] = torch.cat(
            [hf[theirs + f"self_attn.{p}_proj.weight"] for p in ("q", "k", "v")], dim=0)
        out[ours + "attention.wo.weight"] = hf[theirs + "self_attn.o_proj.weight"]
        out[ours + "feed_forward.w13.weight"] = torch.cat(
            [hf[theirs + "mlp.gate_proj.weight"], hf[theirs + "mlp.up_proj.weight"]], dim=0)
        out[ours + "feed_forward.w2.weight"] = hf[theirs + "mlp.down_proj.weight"]
        out[ours + "attention_norm.weight"] = hf[theirs + "input_layernorm.weight"]
        out[ours + "ffn_norm.weight"] = hf[theirs + "post_attention_layernorm.weight"]
    return out


def export_hf(model: Llama, out_dir: str | Path, tokenizer: Any = None, dtype: torch.dtype = torch.float32) -> Path:
    """Write safetensors + config.json (+ tokenizer files) that AutoModelForCausalLM loads."""
    return export_hf_state(model.args, model.state_dict(), out_dir, tokenizer, dtype)


def export_hf_state(args: ModelArgs, state_dict: Dict[str, torch.Tensor], out_dir: str | Path, tokenizer: Any = None,
                    dtype: torch.dtype = torch.float32) -> Path:
    """export_hf from model arguments and a full state dict (as gathered from a sharded model)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in hf_tensors(args, state_dict).items()}
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    eos = getattr(tokenizer, "eos_token_id", None)
    config = hf_config(args, eos)
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir))
    return out_dir


def args_from_hf_config(config: Dict[str, Any]) -> ModelArgs:
    """Our ModelArgs from a Hugging Face Llama config.json dict."""
    theta = config.get("rope_parameters", {}).get("rope_theta", config.get("rope_theta", 10000.0))
    return ModelArgs(
        dim=config["hidden_size"],
        n_layers=config["num_hidden_layers"],
        n_heads=config["num_attention_heads"],
        n_kv_heads=config.get("num_key_value_heads", config["num_attention_heads"]),
        ffn_dim=config["intermediate_size"],
        vocab_size=config["vocab_size"],
        max_seq_len=config.get("max_position_embeddings", 2048),
        rope_theta=theta,
        norm_eps=config.get("rms_norm_eps", 1e-5),
        tie_embeddings=config.get("tie_word_embeddings", False),
        init_std=config.get("initializer_range", 0.02),
    )


def import_hf(model_dir: str | Path, max_seq_len: Optional[int] = None) -> Llama:
    """Load a Hugging Face Llama directory (single safetensors file) into our model; ``max_seq_len`` extends
    the RoPE tables beyond max_position_embeddings (e.g. to score a model on longer SFT rows)."""
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ValueError(f"{model_dir}: model_type={config.get('model_type')!r}, expected 'llama'")
    args = args_from_hf_config(config)
    if max_seq_len is not None and max_seq_len > args.max_seq_len:
        args = dataclasses.replace(args, max_seq_len=max_seq_len)
    model = Llama(args)
    state = from_hf_state_dict(load_file(str(model_dir / WEIGHTS_FILE)), args)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model
