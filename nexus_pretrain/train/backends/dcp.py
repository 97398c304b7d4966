"""Model and optimizer state through torch Distributed Checkpoint (DCP), for the single and fsdp2 backends.

DCP writes every rank's shards in parallel and reshards on load, so a checkpoint written by N ranks
loads on M ranks (and by the single-device backend, which sees plain tensors as one shard).
"""

from __future__ import annotations

import io
import warnings
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

from nexus_pretrain.optim.base import StepOptimizer


def _quiet(fn, *args, **kwargs):
    # One process without a process group is a supported DCP mode; its warning says just that.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to")
        return fn(*args, **kwargs)


class WeightsOnlyLoadPlanner(DefaultLoadPlanner):
    """DCP's default load planner, except that the non-tensor entries (optimizer step counts, parameter
    groups) must unpickle with ``weights_only=True``: plain data and tensors, no code."""

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        torch.load(value, weights_only=True)  # raises on anything beyond plain data
        value.seek(0)
        super().load_bytes(read_item, value)


def app_state(model: torch.nn.Module, optimizer: StepOptimizer) -> Dict[str, Any]:
    """The nested dict DCP saves: the model's and the optimizer's state dicts."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict()}


def materialize_optimizer_state(optimizer: StepOptimizer) -> None:
    """Create the outer optimizer's lazily built state (moments, step counts) without changing a parameter.

    DCP loads in place into a template of the right shapes, and torch optimizers build their state at
    the first step; so take one step with zero gradients at learning rate 0 (torch's own
    ``_init_optim_state`` does the same) and restore the learning rates.
    """
    outer = optimizer.outer
    if outer.state:
        return
    saved = [group["lr"] for group in outer.param_groups]
    for group in outer.param_groups:
        for p in group["params"]:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
    for group in outer.param_groups:
        group["lr"] = 0.0
    outer.step()
    for group, lr in zip(outer.param_groups, saved):
        group["lr"] = lr
    outer.zero_grad(set_to_none=True)


def save(directory: Path, model: torch.nn.Module, optimizer: StepOptimizer, asynchronous: bool = False) -> Optional[Future]:
    """Write model and optimizer state to ``directory`` (collective); with ``asynchronous`` the write
    continues in the background after a copy to CPU memory and the returned future completes it."""
    materialize_optimizer_state(optimizer)  # so that a checkpoint before the first step has the same keys
    state = app_state(model, optimizer)
    if asynchronous:
        return _quiet(dcp.async_save, state, checkpoint_id=str(directory))
    _quiet(dcp.save, state, checkpoint_id=str(directory))
    return None


def load(directory: Path, model: torch.nn.Module, optimizer: StepOptimizer) -> None:
    """Restore what save wrote, resharding to this run's layout (collective)."""
    materialize_optimizer_state(optimizer)
    state = app_state(model, optimizer)
    _quiet(dcp.load, state, checkpoint_id=str(directory), planner=WeightsOnlyLoadPlanner())
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])


def load_model_only(directory: Path, model: torch.nn.Module) -> None:
    """Load just the model weights of a checkpoint (for export and evaluation), in one process."""
    state = {"model": model.state_dict()}
    _quiet(dcp.load, state, checkpoint_id=str(directory), planner=WeightsOnlyLoadPlanner())
    model.load_state_dict(state["model"])
