"""One process, one device (CPU or a single GPU)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Tuple

import torch

from nexus_pretrain.config import BackendConfig
from nexus_pretrain.model.float8 import apply_float8
from nexus_pretrain.model.llama import compile_regions
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.train.backends import dcp

if TYPE_CHECKING:
    from nexus_pretrain.config import OptimConfig
    from nexus_pretrain.optim.base import StepOptimizer


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """auto -> cuda (this process's local GPU) if available else cpu; errors clearly when cuda is
    asked for but absent."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("backend.device=cuda but no GPU is visible; use backend.device=cpu")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 compute on GPU for precision auto/bf16; None (fp32) otherwise on CPU with auto."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def recorded_precision(precision: str, device: torch.device) -> str:
    """backend.precision as a run records it: auto becomes what it computes in on ``device`` (bf16 or
    fp32), so that a resume where auto means otherwise (a GPU run on CPU) is refused, not silently changed."""
    return "fp32" if autocast_dtype(precision, device) is None else "bf16"


class SingleDevice:
    """Backend for one device: moves the model there, optional per-block compile and checkpointing."""

    name = "single"
    rank = 0
    world_size = 1

    def __init__(self, cfg: BackendConfig, compile: bool = False, activation_checkpointing: bool = False):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.dtype = autocast_dtype(cfg.precision, self.device)
        self.compile = compile
        self.activation_checkpointing = activation_checkpointing

    @property
    def is_main(self) -> bool:
        return True

    def setup(self, model: torch.nn.Module, optim_cfg: "OptimConfig", seed: int) -> Tuple[torch.nn.Module, "StepOptimizer"]:
        """Place the model on the device, convert it to FP8 (model.float8), compile its regions if asked,
        build the optimizer."""
        model = model.to(self.device)
        model.activation_checkpointing = self.activation_checkpointing
        apply_float8(model, self.device, compile=self.compile)
        if self.compile:
            compile_regions(model)
        return model, build_optimizer(optim_cfg, model, seed=seed, compile=self.compile)

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor, sync: bool) -> None:
        loss.backward()

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        return value.clone()

    def save(self, directory: Path, model: torch.nn.Module, optimizer: "StepOptimizer"):
        return dcp.save(directory, model, optimizer, asynchronous=self.cfg.async_checkpoint)

    def load(self, directory: Path, model: torch.nn.Module, optimizer: "StepOptimizer") -> None:
        dcp.load(directory, model, optimizer)

    def full_state_dict(self, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    def barrier(self) -> None:
        """Nothing to wait for."""

    def close(self) -> None:
        """Nothing to release."""
