"""The two models nexus-bench compares on one shape: ours (model/llama.py, as the trainer runs it) and
Hugging Face's LlamaForCausalLM (as its users run it: SDPA attention, the whole model compiled, its
own loss from ``labels``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from nexus_pretrain.model.float8 import apply_float8
from nexus_pretrain.model.hf import hf_config
from nexus_pretrain.model.llama import Llama, ModelArgs, compile_regions, to_autocast_dtype

MODELS = ("ours", "ours_fp8", "hf")
"""ours_fp8: ours with model.float8=true (FP8 training linears, nexus-bench --float8)."""


@dataclass
class BenchModel:
    """A model on its device and the training loss of one micro-batch of token ids (B, T+1)."""
    module: torch.nn.Module
    loss: Callable[[torch.Tensor], torch.Tensor]


def build_ours(args: ModelArgs, device: torch.device, compile: bool, activation_checkpointing: int,
               inductor_options: Optional[dict] = None) -> BenchModel:
    """Our Llama as the trainer sets it up: FP8 linears as args.float8 asks, regional compile (blocks and
    the norm-head-loss; ``inductor_options`` as compile_regions takes them) and, when
    ``activation_checkpointing`` is n > 0, every n-th block recomputed in backward."""
    with torch.device(device):
        model = Llama(args)
    apply_float8(model, device, compile=compile)
    model.activation_checkpointing = activation_checkpointing > 0
    model.recompute_every = max(activation_checkpointing, 1)
    if compile:
        compile_regions(model, inductor_options)
    return BenchModel(model, lambda batch: model(batch[:, :-1], batch[:, 1:]).mean())


def build_hf(args: ModelArgs, device: torch.device, compile: bool, activation_checkpointing: int) -> BenchModel:
    """LlamaForCausalLM of the same shape with SDPA attention, compiled whole (``torch.compile(model)``,
    as Hugging Face documents); loss from ``labels`` (shifted inside, so T-1 targets per row).
    Activation checkpointing is Hugging Face's, of every n-th layer (every layer in versions without
    ``activation_checkpointing_enable``)."""
    from transformers import AutoModelForCausalLM, LlamaConfig  # heavy: transformers, only for the hf model


    config = LlamaConfig(**hf_config(args))
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    if activation_checkpointing > 0:
        no_reentrant = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(no_reentrant, every_n_layers=activation_checkpointing)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=no_reentrant)
    if args.residual_dtype == "bfloat16":
        # The same residual numerics as ours: with a bf16 embedding output, HF's residual adds stay bf16
        # (its RMSNorm computes in fp32 and hands back the weight's dtype, which the next matmul casts).
        model.get_input_embeddings().register_forward_hook(lambda module, inputs, out: to_autocast_dtype(out))
    model.train()
    forward = torch.compile(model) if compile else model

    def loss(batch: torch.Tensor) -> torch.Tensor:
        inputs = batch[:, :-1]
        return forward(input_ids=inputs, labels=inputs).loss

    return BenchModel(model, loss)


def build_model(name: str, args: ModelArgs, device: torch.device, compile: bool,
                activation_checkpointing: int = 0, inductor_options: Optional[dict] = None) -> BenchModel:
    """``ours``, ``ours_fp8`` (ours with args.float8 as given) or ``hf`` (see build_ours, build_hf);
    ``inductor_options`` apply to ours."""
    if name in ("ours", "ours_fp8"):
        return build_ours(args, device, compile, activation_checkpointing, inductor_options)
    if name == "hf":
        return build_hf(args, device, compile, activation_checkpointing)
    raise SystemExit(f"--models: unknown {name!r}; choose from {', '.join(MODELS)}")
