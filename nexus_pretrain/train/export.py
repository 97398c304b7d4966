"""Export any run checkpoint (single, fsdp2 or deepspeed) to a Hugging Face model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import torch
from omegaconf import OmegaConf

from nexus_pretrain.config import TrainConfig
from nexus_pretrain.data.build import load_tokenizer_for
from nexus_pretrain.model.hf import export_hf_state
from nexus_pretrain.model.llama import Llama, ModelArgs
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.backends.dcp import load_model_only
from nexus_pretrain.train.backends.deepspeed import load_fp32_weights


def checkpoint_config(checkpoint: str | Path) -> TrainConfig:
    """The run config stored with a checkpoint."""
    stored = ckpt.read_meta(checkpoint)["config"]
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), stored))


def load_checkpoint_weights(checkpoint: str | Path) -> Tuple[ModelArgs, Dict[str, torch.Tensor], TrainConfig]:
    """Model arguments, full fp32 weights (our parameter names, on CPU) and config of a checkpoint, in one
    process whatever the world size that wrote it; CheckpointError naming the checkpoint when it does not
    match its manifest."""

    checkpoint = ckpt.verify_checkpoint(Path(checkpoint))
    cfg = checkpoint_config(checkpoint)
    args = resolve_model_args(cfg.model, len(load_tokenizer_for(cfg.data)), cfg.data.seq_len)
    backend = ckpt.read_meta(checkpoint)["backend"]
    if backend == "deepspeed":
        return args, load_fp32_weights(checkpoint), cfg

    with torch.device("meta"):
        model = Llama(args)
    model = model.to_empty(device="cpu")
    load_model_only(checkpoint, model)
    return args, model.state_dict(), cfg


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path) -> Path:
    """Write a checkpoint's weights and its run's tokenizer as a Hugging Face model directory."""
    args, state, cfg = load_checkpoint_weights(checkpoint)
    return export_hf_state(args, state, out_dir, tokenizer=load_tokenizer_for(cfg.data))
