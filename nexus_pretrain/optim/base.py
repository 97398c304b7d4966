"""The step-function interface every optimizer exposes to the trainer (see DESIGN.md).

The loop is the same for every optimizer::

    for micro_batch in window:
        (loss / accumulation).backward()
        opt.micro_step()          # plain optimizers: nothing; Nexus: inner normalized-SGD step
    metrics = opt.step()          # outer step on the (pseudo-)gradient
    opt.zero_grad()
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Protocol, runtime_checkable

import torch

from nexus_pretrain.optim.dtensor import full_tensor


@runtime_checkable
class StepOptimizer(Protocol):
    """What the trainer calls; it never asks which optimizer it has."""

    outer: torch.optim.Optimizer
    """The torch optimizer whose param_groups carry the learning rate the schedule scales."""

    sync_every_micro_step: bool
    """Whether each micro-batch gradient must be reduced across ranks before micro_step (Nexus); if
    False, gradients may accumulate locally and be reduced once, on the last micro-batch."""

    def set_lr_multiplier(self, multiplier: float) -> None:
        """Scale every learning rate by the schedule's multiplier for the coming step."""

    def micro_step(self) -> None:
        """Called after each micro-batch backward."""

    def step(self) -> Dict[str, torch.Tensor]:
        """Called at the accumulation boundary; returns scalar metrics (0-d tensors, no host sync)."""

    def zero_grad(self) -> None:
        """Drop gradients before the next accumulation window."""

    def discard(self) -> None:
        """Abandon the current window instead of stepping: parameters back to where the window
        started, gradients dropped (skipping a step whose loss was not finite)."""

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to resume exactly."""

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what state_dict returned."""


def record_peak_learning_rates(optimizer: torch.optim.Optimizer) -> None:
    """Remember each param group's configured lr as its ``peak_lr`` (call when the optimizer is built).

    The peak is recorded before any schedule step or checkpoint load rewrites ``lr``: a group created
    later from a checkpoint's lr (e.g. one saved mid-decay) would otherwise take that value as its peak.
    """
    for group in optimizer.param_groups:
        group.setdefault("peak_lr", group["lr"])


def scale_learning_rates(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    """Set each param group's lr to its peak lr (see record_peak_learning_rates) times multiplier."""
    record_peak_learning_rates(optimizer)  # groups of an optimizer built without recording them
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * multiplier


def clip_gradients(params: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip gradients to a global L2 norm (no-op when max_norm <= 0) and return the pre-clip norm
    (a plain 0-d tensor; DTensor gradients are reduced across ranks)."""
    params = [p for p in params if p.grad is not None]
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
    return full_tensor(norm)


class Accumulate:
    """Plain gradient accumulation (paper Alg. 2): micro_step does nothing, step clips and steps."""

    sync_every_micro_step = False

    def __init__(self, outer: torch.optim.Optimizer, max_grad_norm: float = 0.0):
        self.outer = outer
        record_peak_learning_rates(outer)
        self.max_grad_norm = max_grad_norm
        self._params = [p for g in outer.param_groups for p in g["params"]]

    def set_lr_multiplier(self, multiplier: float) -> None:
        """Scale the outer learning rates."""
        scale_learning_rates(self.outer, multiplier)

    def micro_step(self) -> None:
        """Gradients keep accumulating in .grad."""

    def step(self) -> Dict[str, torch.Tensor]:
        """Clip the accumulated gradient and take the outer step."""
        grad_norm = clip_gradients(self._params, self.max_grad_norm)
        self.outer.step()
        return {"grad_norm": grad_norm}

    def zero_grad(self) -> None:
        """Drop the accumulated gradients."""
        self.outer.zero_grad(set_to_none=True)

    def discard(self) -> None:
        """The parameters have not moved since the last step: just drop the gradients."""
        self.zero_grad()

    def state_dict(self) -> Dict[str, Any]:
        """The outer optimizer's state."""
        return {"outer": self.outer.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the outer optimizer's state."""
        self.outer.load_state_dict(state["outer"])
