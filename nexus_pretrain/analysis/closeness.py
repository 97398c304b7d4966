"""Parameter closeness (paper Sec. 5.1): how far the downstream task's minimizer is from the pretrained one.

From the final pretraining checkpoint theta_train*, full-batch gradient descent on one task's gold-answer
loss (AdamW, lr 2e-5, weight decay 0, as the paper states; every step sees all of the task's selected
examples) locates theta_T*; we report ||theta_T* - theta_train*||_2 over all parameters, that distance
relative to ||theta_train*||_2, and the task loss before and after.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, List

import torch

from nexus_pretrain.analysis.sources import flat_parameters, is_gold, objective_backward, objective_loss

OPTIMIZERS = ("adamw", "sgd")


@dataclass
class GDSettings:
    """Full-batch descent on a task's gold-answer loss."""
    steps: int = 100
    lr: float = 2e-5
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adamw (the paper) or sgd (plain gradient descent, for checks)
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    batch_size: int = 8  # forward micro-batch; gradients are accumulated over all examples every step

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.steps < 0:
            raise ValueError(f"steps={self.steps} must be >= 0")


def descend(model: torch.nn.Module, data: Any, settings: GDSettings) -> Dict[str, object]:
    """Run full-batch descent in place on ``model``; returns the loss after every step (index 0 = before)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=settings.lr, betas=settings.betas, eps=settings.eps,
                                weight_decay=settings.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=settings.lr, weight_decay=settings.weight_decay)
    model.eval()  # no dropout in our Llama; eval only fixes the mode
    losses: List[float] = []
    for _ in range(settings.steps):
        opt.zero_grad(set_to_none=True)
        losses.append(objective_backward(model, data, settings.batch_size))
        opt.step()
    with torch.no_grad():
        losses.append(float(objective_loss(model, data, settings.batch_size)))
    opt.zero_grad(set_to_none=True)
    return {"losses": losses}


def task_minimizer(model: torch.nn.Module, data: Any, settings: GDSettings) -> tuple:
    """(a copy of ``model`` moved to theta_T*, the descent record); ``model`` is untouched."""
    moved = copy.deepcopy(model)
    record = descend(moved, data, settings)
    return moved, record


def closeness(theta_train: torch.Tensor, theta_task: torch.Tensor) -> Dict[str, float]:
    """||theta_T* - theta_train*||_2, ||theta_train*||_2 and their ratio (all parameters, fp64 sums)."""
    distance = float((theta_task.double() - theta_train.double()).norm())
    norm = float(theta_train.double().norm())
    return {"distance": distance, "train_norm": norm, "relative": distance / norm if norm else float("nan")}


def parameter_closeness(model: torch.nn.Module, tasks: Dict[str, Any], settings: GDSettings,
                        keep: bool = False) -> Dict[str, Dict[str, object]]:
    """Per target: distance, relative distance, loss before/after and the loss per step.

    A target is a downstream task's gold-answer Sequences or a (training or OOD) domain's MicroBatch
    windows (the paper's "Pretrain Set" / "OOD Set" columns of Tab. 4).

    With ``keep``, each entry also holds "theta" (the flat fp32 theta_T*) for the landscape.
    """
    theta_train = flat_parameters(model)
    out: Dict[str, Dict[str, object]] = {}
    for column, data in tasks.items():
        moved, record = task_minimizer(model, data, settings)
        theta_task = flat_parameters(moved)
        losses = record["losses"]
        out[column] = {**closeness(theta_train, theta_task), "loss_before": losses[0], "loss_after": losses[-1],
                       "losses": losses, **_size(data)}
        if keep:
            out[column]["theta"] = theta_task
        del moved
    return out


def _size(data: Any) -> Dict[str, int]:
    if is_gold(data):
        return {"examples": len(data), "tokens": sum(min(n, len(t) - 1) for t, n in data)}
    return {"examples": sum(len(b.inputs) for b in data), "tokens": sum(b.targets.numel() for b in data)}
