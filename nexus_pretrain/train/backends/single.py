"""One process, one device (CPU or a single GPU)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch

from nexus_pretrain.config import BackendConfig


def resolve_device(name: str) -> torch.device:
    """auto -> cuda if available else cpu; errors clearly when cuda is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("backend.device=cuda but no GPU is visible; use backend.device=cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPU for precision auto/bf16; None (fp32) otherwise on CPU with auto."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


class SingleDevice:
    """Backend for one device: moves the model there, optional per-block compile and checkpointing."""

    rank = 0
    world_size = 1

    def __init__(self, cfg: BackendConfig, compile: bool = False, activation_checkpointing: bool = False):
        self.device = resolve_device(cfg.device)
        self.dtype = autocast_dtype(cfg.precision, self.device)
        self.compile = compile
        self.activation_checkpointing = activation_checkpointing

    @property
    def is_main(self) -> bool:
        return True

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Place the model on the device; compile each block (regional compilation) if asked."""
        model = model.to(self.device)
        model.activation_checkpointing = self.activation_checkpointing
        if self.compile:
            for block in model.layers:
                block.compile()
        return model

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def close(self) -> None:
        """Nothing to release."""
