"""How the trainer places a model and reduces across ranks, behind one small interface."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

import torch


class Backend(Protocol):
    """What the trainer needs from a parallelism backend."""

    device: torch.device
    rank: int
    world_size: int

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move/shard/compile the model; returns the module to train."""

    def autocast(self) -> AbstractContextManager:
        """Mixed-precision context for forward passes."""

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of a tensor over ranks (identity on one rank)."""

    @property
    def is_main(self) -> bool:
        """True on the rank that logs and writes shared files."""

    def close(self) -> None:
        """Release process groups and other resources."""
