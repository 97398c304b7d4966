"""How the trainer places a model, reduces gradients and checkpoints, behind one small interface.

The trainer's step loop is the same on every backend (data/layout.py: K inner batches of L passes)::

    model, optimizer = backend.setup(model, cfg.optim, seed)
    for inner in range(K):
        for micro in range(L):
            with backend.autocast():
                loss = loss_fn(model(batch.inputs), batch.targets)
            backend.backward(loss * weight, sync=micro == L - 1 and
                             (optimizer.consumes_each_inner_batch or inner == K - 1))
        optimizer.micro_step()
    optimizer.step(); optimizer.zero_grad()

Checkpoints: ``backend.save(directory, model, optimizer)`` writes the model and optimizer state (a
collective call, every rank takes part) into a directory that train/checkpoint.py makes atomic;
``backend.load`` restores it, resharding when the world size changed where the backend can.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Protocol, Tuple

import torch

if TYPE_CHECKING:
    from nexus_pretrain.config import OptimConfig
    from nexus_pretrain.optim.base import StepOptimizer


class Backend(Protocol):
    """What the trainer needs from a parallelism backend."""

    name: str
    device: torch.device
    rank: int
    world_size: int

    def setup(self, model: torch.nn.Module, optim_cfg: "OptimConfig", seed: int) -> Tuple[torch.nn.Module, "StepOptimizer"]:
        """Place/shard/compile the model and build its optimizer; returns the module to call and the optimizer."""

    def autocast(self) -> AbstractContextManager:
        """Mixed-precision context for forward passes."""

    def backward(self, loss: torch.Tensor, sync: bool) -> None:
        """Backward of an already-weighted loss; sync=False lets gradients accumulate locally without a
        cross-rank reduction (the last pass of the step, or of every inner batch for Nexus, syncs)."""

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of a tensor over ranks (identity on one rank); returns a new tensor."""

    def save(self, directory: Path, model: torch.nn.Module, optimizer: "StepOptimizer") -> None:
        """Write model and optimizer state into ``directory`` (collective)."""

    def load(self, directory: Path, model: torch.nn.Module, optimizer: "StepOptimizer") -> None:
        """Restore what save wrote (collective)."""

    def full_state_dict(self, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        """The model's full (unsharded) state on CPU on the main rank, {} elsewhere (collective)."""

    def barrier(self) -> None:
        """Wait for every rank."""

    @property
    def is_main(self) -> bool:
        """True on the rank that logs and writes shared files."""

    def close(self) -> None:
        """Release process groups and other resources."""
