"""Weights-only initialisation from a pretrained checkpoint, run or Hugging Face directory (trainer.init_from)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import torch

from nexus_pretrain.model.hf import import_hf
from nexus_pretrain.model.llama import Llama
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.export import load_checkpoint_weights


def pretrained_state(path: str | Path) -> Dict[str, torch.Tensor]:
    """Full fp32 weights (our parameter names) of a checkpoint directory (verified: CheckpointError naming it
    when damaged), a run directory (its hf/ export, else its newest intact checkpoint) or a Hugging Face
    Llama directory."""

    path = Path(path)
    if (path / "config.yaml").is_file() and not (path / ckpt.META_FILE).is_file():  # a run directory
        if (path / "hf" / "config.json").is_file():
            path = path / "hf"
        else:
            latest = ckpt.latest_valid_checkpoint(path)  # damaged newer ones are skipped with a warning
            if latest is None:
                raise ValueError(f"trainer.init_from={str(path)!r}: run directory without hf/ or a complete checkpoint")
            path = latest
    if (path / ckpt.META_FILE).is_file() or ckpt.is_sealed(path):
        return load_checkpoint_weights(path)[1]
    if (path / "config.json").is_file():
        return import_hf(path).state_dict()
    raise ValueError(f"trainer.init_from={str(path)!r} is neither a checkpoint (meta.json), a run (config.yaml) nor "
                     "a Hugging Face model directory (config.json)")


@torch.no_grad()
def load_pretrained(model: Llama, path: str | Path) -> None:
    """Copy the pretrained weights at ``path`` into ``model`` (ValueError naming the first mismatch)."""
    state = pretrained_state(path)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        name, there, absent = (missing[0], "this model", "the pretrained weights") if missing else \
            (unexpected[0], "the pretrained weights", "this model")
        raise ValueError(f"trainer.init_from={str(path)!r}: parameter {name} is in {there} but not in {absent}; "
                         "set model.* to the pretrained model's shape")
    for name, tensor in own.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ValueError(f"trainer.init_from={str(path)!r}: {name} has shape {tuple(state[name].shape)} there but "
                             f"{tuple(tensor.shape)} in this model; set model.* (preset, vocab via data.tokenizer) "
                             "to the pretrained model's shape")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
