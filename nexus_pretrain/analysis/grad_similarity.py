"""Pairwise cosine similarity of per-domain full gradients: the quantity Nexus is meant to raise."""

from __future__ import annotations

from itertools import combinations
from typing import Any, Callable, Dict, List

import torch

from nexus_pretrain.optim.dtensor import full_tensor as _full


def domain_gradient_cosine(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    batches: Dict[str, Any],
) -> Dict[str, float]:
    """Cosine similarity between the gradients of loss_fn(model, batch) for every pair of domains.

    Gradients are over all trainable parameters, in fp32, taken with torch.autograd.grad (existing
    .grad fields and the parameters are left untouched). Returns {"cos/<a>-<b>": ..., "cos/mean": mean
    over pairs}, pairs in the order of ``batches``.
    """
    if len(batches) < 2:
        raise ValueError(f"batches has {len(batches)} domain(s); give at least two to compare")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    grads: Dict[str, List[torch.Tensor]] = {}
    for domain, batch in batches.items():
        loss = loss_fn(model, batch)
        raw = torch.autograd.grad(loss, params, allow_unused=True)
        grads[domain] = [torch.zeros_like(p, dtype=torch.float32) if g is None else g.float() for p, g in zip(params, raw)]

    def dot(a: List[torch.Tensor], b: List[torch.Tensor]) -> torch.Tensor:
        # Per-tensor sums (reduced across ranks for DTensors) equal the dot of the flattened vectors.
        return torch.stack([_full(torch.sum(x * y)).to(torch.float64) for x, y in zip(a, b)]).sum()

    sq_norm = {d: dot(g, g) for d, g in grads.items()}
    result: Dict[str, float] = {}
    for a, b in combinations(batches, 2):
        cos = dot(grads[a], grads[b]) / (sq_norm[a] * sq_norm[b]).sqrt().clamp_min(1e-30)
        result[f"cos/{a}-{b}"] = float(cos)
    result["cos/mean"] = sum(result.values()) / len(result)
    return result
