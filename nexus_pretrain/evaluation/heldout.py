"""Held-out losses: per-domain validation, the mixture-weighted pretrain loss and the OOD loss."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Mapping, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from nexus_pretrain.config import DataConfig
from nexus_pretrain.data import embedded
from nexus_pretrain.data.sampler import eval_batches
from nexus_pretrain.data.tokens import domain_tokens
from nexus_pretrain.model.hf import import_hf
from nexus_pretrain.model.llama import lm_loss
from nexus_pretrain.run_data import build_data


@torch.no_grad()
def stream_loss(model: torch.nn.Module, stream: np.ndarray, seq_len: int, n_sequences: int, batch_size: int,
                device: torch.device, autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> float:
    """Mean next-token loss per target token over fixed evenly spaced windows of a token stream (or the
    held-out rows of an SFT set, counting response tokens only)."""
    total, count = 0.0, 0
    for batch in eval_batches(stream, seq_len, n_sequences, batch_size):
        batch = batch.to(device)
        with autocast():
            loss = lm_loss(model(batch.inputs), batch.targets)
        tokens = int((batch.targets != -100).sum())
        total += loss.item() * tokens
        count += tokens
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


DEFAULT_WINDOW = 128
"""Held-out window length for a bare model directory, when the model's context allows it."""


def heldout_losses(model_dir: str | Path, seq_len: Optional[int] = None, n_sequences: int = 32) -> Dict[str, float]:
    """Held-out losses of an exported Hugging Face model directory on the embedded corpus, in windows of
    ``seq_len`` tokens (default: DEFAULT_WINDOW or the model's context, whichever is shorter); ValueError
    naming the limit when ``seq_len`` exceeds the context."""
    model = import_hf(model_dir)
    context = model.args.max_seq_len
    if seq_len is None:
        seq_len = min(DEFAULT_WINDOW, context)
    elif seq_len > context:
        raise ValueError(f"--seq-len {seq_len} exceeds the model's context of {context} tokens "
                         f"(max_position_embeddings in {Path(model_dir) / 'config.json'}); give --seq-len {context} "
                         "or less")
    tokenizer = embedded.load_tokenizer()
    val = {d: domain_tokens(d, "val", tokenizer=tokenizer) for d in embedded.TRAIN_DOMAINS}
    ood = {d: domain_tokens(d, "val", tokenizer=tokenizer) for d in embedded.OOD_DOMAINS}
    weights = {d: 1.0 for d in val}
    return heldout_metrics(model, val, ood, weights, seq_len, n_sequences, 8, torch.device("cpu"))


def current_data_config(data_cfg: Any) -> Any:
    """A run's saved data config with the fields added since it was saved at their defaults."""
    return OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.structured(data_cfg))


def run_heldout_losses(run_dir: str | Path, model_dir: str | Path | None = None, batch_size: int = 8,
                       device: str = "cpu") -> Dict[str, float]:
    """Held-out losses of a run's exported model on that run's own validation and OOD data.

    Reads RUN_DIR/config.yaml and rebuilds the data the trainer evaluated on (same domains, mixture
    weights, sequence length and number of windows), so the numbers match its in-loop val/* and ood/*.
    ``model_dir`` defaults to RUN_DIR/hf.
    """

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; is {run_dir} a nexus-train run directory?")
    cfg = OmegaConf.load(config_path)
    model_dir = Path(model_dir) if model_dir is not None else run_dir / "hf"
    return data_heldout_losses(cfg.data, int(cfg.trainer.seed), model_dir, batch_size, device)


def data_heldout_losses(data_cfg: Any, seed: int, model_dir: str | Path, batch_size: int = 8,
                        device: str = "cpu") -> Dict[str, float]:
    """Held-out losses of a Hugging Face model directory on the validation and OOD data of a data config
    (e.g. a pretrained model scored on SFT data)."""


    data_cfg = current_data_config(data_cfg)
    data = build_data(data_cfg, seed)
    model = import_hf(model_dir, max_seq_len=int(data_cfg.seq_len)).to(device)
    return heldout_metrics(model, data.val_streams, data.ood_streams, data.sampler.weights, int(data_cfg.seq_len),
                           int(data_cfg.eval_sequences), batch_size, torch.device(device))
