"""Held-out losses: per-domain validation, the mixture-weighted pretrain loss and the OOD loss."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, ContextManager, Dict, Mapping

import numpy as np
import torch

from nexus_pretrain.data.sampler import eval_batches
from nexus_pretrain.model.llama import lm_loss


@torch.no_grad()
def stream_loss(model: torch.nn.Module, stream: np.ndarray, seq_len: int, n_sequences: int, batch_size: int,
                device: torch.device, autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> float:
    """Mean next-token loss over fixed evenly spaced windows of a token stream."""
    total, count = 0.0, 0
    for batch in eval_batches(stream, seq_len, n_sequences, batch_size):
        batch = batch.to(device)
        with autocast():
            loss = lm_loss(model(batch.inputs), batch.targets)
        total += loss.item() * len(batch.inputs)
        count += len(batch.inputs)
    return total / count


def heldout_metrics(model: torch.nn.Module, val_streams: Mapping[str, np.ndarray], ood_streams: Mapping[str, np.ndarray],
                    weights: Mapping[str, float], seq_len: int, n_sequences: int, batch_size: int,
                    device: torch.device, autocast: Callable[[], ContextManager] = contextlib.nullcontext
                    ) -> Dict[str, float]:
    """val/<domain>, val/pretrain (weighted by the mixture), ood/<domain> and ood/mean."""
    was_training = model.training
    model.eval()
    out: Dict[str, float] = {}
    for name, stream in val_streams.items():
        out[f"val/{name}"] = stream_loss(model, stream, seq_len, n_sequences, batch_size, device, autocast)
    total = sum(weights[d] for d in val_streams)
    out["val/pretrain"] = sum(weights[d] * out[f"val/{d}"] for d in val_streams) / total
    for name, stream in ood_streams.items():
        out[f"ood/{name}"] = stream_loss(model, stream, seq_len, n_sequences, batch_size, device, autocast)
    if ood_streams:
        out["ood/mean"] = sum(out[f"ood/{d}"] for d in ood_streams) / len(ood_streams)
    model.train(was_training)
    return out


def heldout_losses(model_dir: str | Path, seq_len: int = 128, n_sequences: int = 32) -> Dict[str, float]:
    """Held-out losses of an exported Hugging Face model directory on the embedded corpus."""
    from nexus_pretrain.data import embedded
    from nexus_pretrain.data.tokens import domain_tokens
    from nexus_pretrain.model.hf import import_hf

    model = import_hf(model_dir)
    tokenizer = embedded.load_tokenizer()
    val = {d: domain_tokens(d, "val", tokenizer=tokenizer) for d in embedded.TRAIN_DOMAINS}
    ood = {d: domain_tokens(d, "val", tokenizer=tokenizer) for d in embedded.OOD_DOMAINS}
    weights = {d: 1.0 for d in val}
    return heldout_metrics(model, val, ood, weights, seq_len, n_sequences, 8, torch.device("cpu"))
