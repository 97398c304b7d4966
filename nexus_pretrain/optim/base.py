"""The step-function interface every optimizer exposes to the trainer (see DESIGN.md).

The loop is the same for every optimizer (data/layout.py: K inner batches of L local passes each)::

    for inner_batch in range(K):
        for local in range(L):                # memory only: passes accumulate without a reduction
            (loss * weight).backward()        # weight = 1/L if opt.consumes_each_inner_batch else 1/(K*L)
        opt.micro_step()          # plain optimizers: nothing; Nexus: inner step on the inner batch's mean gradient
    metrics = opt.step()          # outer step on the (pseudo-)gradient
    opt.zero_grad()
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Tuple, runtime_checkable

import torch

from nexus_pretrain.optim.dtensor import full_tensor


@runtime_checkable
class StepOptimizer(Protocol):
    """What the trainer calls; it never asks which optimizer it has."""

    outer: torch.optim.Optimizer
    """The torch optimizer whose param_groups carry the learning rate the schedule scales."""

    consumes_each_inner_batch: bool
    """True (Nexus): micro_step reads each inner batch's own mean gradient, reduced across ranks at the
    end of every inner batch. False: gradients accumulate into the mean over the whole global batch,
    reduced once at the end of the step."""

    def set_lr_multiplier(self, multiplier: float) -> None:
        """Scale every learning rate by the schedule's multiplier for the coming step."""

    def micro_step(self) -> None:
        """Called once per inner batch, after its last backward."""

    def step(self, skip_nonfinite: bool = False) -> Dict[str, torch.Tensor]:
        """Called after the step's last inner batch; returns scalar metrics (0-d tensors, no host sync),
        at least grad_norm (the norm of the vector max_grad_norm clips) and clip_coef. With
        ``skip_nonfinite`` (one host sync) a non-finite grad_norm leaves the parameters where the step
        started, drops the gradients and returns {"grad_norm": ..., "skipped": ...} instead."""

    def zero_grad(self) -> None:
        """Drop gradients before the next step."""

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


def clip_coefficient(norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    """The factor clipping to max_norm multiplies a vector of this norm by (clip_grad_norm_'s rule:
    max_norm / (norm + 1e-6), at most 1; 1 when clipping is off)."""
    if max_norm <= 0:
        return torch.ones((), device=norm.device)
    return (max_norm / (norm.float() + 1e-6)).clamp(max=1.0)


def clip_gradients(params: Iterable[torch.nn.Parameter], max_norm: float, skip_nonfinite: bool = False,
                   norm_fn: Optional[Callable[[List[torch.Tensor]], torch.Tensor]] = None) -> Tuple[torch.Tensor, bool]:
    """Clip gradients to a global L2 norm (no-op when max_norm <= 0); return the pre-clip norm (a plain
    0-d tensor; DTensor gradients are reduced across ranks, plain shards of one vector through ``norm_fn``)
    and whether the gradients are usable: with ``skip_nonfinite`` a non-finite norm (one host sync) leaves
    them unclipped and returns False."""
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    if norm_fn is None:
        norm = torch.nn.utils.get_total_norm(grads, foreach=True)  # clip_grad_norm_'s two halves
        full = full_tensor(norm)
    else:
        norm = full = norm_fn(grads)
    if skip_nonfinite and not bool(torch.isfinite(full)):
        return full, False
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm, foreach=True)
    return full, True


def skipped(norm: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The metrics of a step refused for its non-finite (pseudo-)gradient norm."""
    return {"grad_norm": norm, "skipped": torch.ones((), device=norm.device)}


class Accumulate:
    """Plain gradient accumulation (paper Alg. 2): micro_step does nothing, step clips the global batch's
    mean gradient and steps."""

    consumes_each_inner_batch = False

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

    def step(self, skip_nonfinite: bool = False) -> Dict[str, torch.Tensor]:
        """Clip the accumulated gradient and take the outer step (see StepOptimizer.step)."""
        grad_norm, usable = clip_gradients(self._params, self.max_grad_norm, skip_nonfinite)
        if not usable:
            self.zero_grad()
            return skipped(grad_norm)
        self.outer.step()
        return {"grad_norm": grad_norm, "clip_coef": clip_coefficient(grad_norm, self.max_grad_norm)}

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
