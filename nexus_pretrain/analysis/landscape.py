"""A 2-D loss-landscape slice through theta_train* and theta_T* (paper Fig. 7c).

theta(a, b) = theta_train* + a d1 + b d2, with d1 = theta_T* - theta_train* (so (0, 0) is the pretrained
model and (1, 0) the task minimizer) and d2 a second direction orthogonal to d1 over the flattened
parameter vector:

- ``random`` (default): a Gaussian direction, Gram-Schmidt-orthogonalized against d1 and rescaled to
  ||d1||, so both axes are in units of the distance between the two minima;
- ``filter``: filter-normalized (Li et al., 2018): a Gaussian direction with each row ("filter") of
  every matrix rescaled to the norm of that row of theta_train*, vectors (norm gains) zeroed; then
  orthogonalized against d1 and left at its own scale, so b = 1 is a filter-normalized step.

On every grid point we evaluate the training-mixture loss (sources.mixture_loss) and each task's
gold-answer loss. The grid always contains a = 0, a = 1 and b = 0 exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from nexus_pretrain.analysis.sources import TrainingSet, mixture_loss, objective_loss, set_flat_parameters
from nexus_pretrain.report.plots import pyplot, save_figure

DIRECTIONS = ("random", "filter")


def axis(low: float, high: float, points: int, must: Sequence[float]) -> np.ndarray:
    """``points`` evenly spaced values in [low, high] plus the values in ``must``, sorted, unique."""
    if points < 2 or low >= high:
        raise ValueError(f"grid axis [{low}, {high}] with {points} points: need low < high and >= 2 points")
    return np.unique(np.concatenate([np.linspace(low, high, points), np.asarray(must, dtype=np.float64)]))


def second_direction(model: torch.nn.Module, d1: torch.Tensor, kind: str = "random", seed: int = 0) -> torch.Tensor:
    """d2 (flat, fp32), orthogonal to d1; see the module docstring for the two kinds."""
    if kind not in DIRECTIONS:
        raise ValueError(f"direction {kind!r} is not one of {', '.join(DIRECTIONS)}")
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if kind == "filter":
            if p.dim() <= 1:
                r.zero_()
            else:
                w = p.detach().double().cpu().reshape(p.shape[0], -1)
                r2 = r.reshape(p.shape[0], -1)
                r2.mul_(w.norm(dim=1, keepdim=True) / r2.norm(dim=1, keepdim=True).clamp_min(1e-30))
        parts.append(r.reshape(-1))
    d2 = torch.cat(parts)
    u = d1.double().cpu()
    u_sq = float(u.dot(u))
    if u_sq > 0:
        d2 = d2 - (d2.dot(u) / u_sq) * u
    if kind == "random":
        d2 = d2 * (u_sq ** 0.5 / float(d2.norm()))
    return d2.float().to(d1.device)


@torch.no_grad()
def loss_grid(model: torch.nn.Module, theta_train: torch.Tensor, theta_task: torch.Tensor, d2: torch.Tensor,
              alphas: np.ndarray, betas: np.ndarray, train: Optional[TrainingSet],
              tasks: Mapping[str, Any], batch_size: int = 8) -> Dict[str, np.ndarray]:
    """Losses on the grid, arrays of shape (len(betas), len(alphas)); the model's parameters are restored."""
    d1 = theta_task - theta_train
    grids: Dict[str, np.ndarray] = {}
    names = ([] if train is None else ["train"]) + list(tasks)
    for name in names:
        grids[name] = np.zeros((len(betas), len(alphas)))
    was_training = model.training
    model.eval()
    try:
        for i, b in enumerate(betas):
            for j, a in enumerate(alphas):
                if a == 1 and b == 0:
                    point = theta_task  # exactly theta_T* (theta_train + (theta_T - theta_train) rounds)
                elif a == 0 and b == 0:
                    point = theta_train
                else:
                    point = theta_train + float(a) * d1 + float(b) * d2
                set_flat_parameters(model, point)
                if train is not None:
                    grids["train"][i, j] = float(mixture_loss(model, train))
                for t, seqs in tasks.items():
                    grids[t][i, j] = float(objective_loss(model, seqs, batch_size))
    finally:
        set_flat_parameters(model, theta_train)
        model.train(was_training)
    return grids


def save_npz(path: Path, alphas: np.ndarray, betas: np.ndarray, grids: Mapping[str, np.ndarray],
             d1_norm: float, d2_norm: float, direction: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, alphas=alphas, betas=betas, d1_norm=d1_norm, d2_norm=d2_norm, direction=direction,
             **{f"loss_{k}": v for k, v in grids.items()})
    return path


def plot(out_dir: Path, name: str, alphas: np.ndarray, betas: np.ndarray, grids: Mapping[str, np.ndarray],
         title: str = "") -> List[Path]:
    """One contour panel per loss; theta_train* marked at (0, 0), theta_T* at (1, 0). PNG and PDF."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(4.5 * len(grids), 4), squeeze=False)
    A, B = np.meshgrid(alphas, betas)
    for ax, (key, grid) in zip(axes[0], grids.items()):
        filled = ax.contourf(A, B, grid, levels=20, cmap="viridis")
        ax.contour(A, B, grid, levels=20, colors="k", linewidths=0.3)
        fig.colorbar(filled, ax=ax)
        ax.plot([0], [0], "o", color="white", markeredgecolor="k", label=r"$\theta_{train}^*$")
        ax.plot([1], [0], "*", color="red", markersize=10, label=r"$\theta_T^*$")
        ax.set_xlabel(r"$\alpha$ (along $\theta_T^* - \theta_{train}^*$)")
        ax.set_ylabel(r"$\beta$")
        ax.set_title(f"{key} loss")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, Path(out_dir), name)
