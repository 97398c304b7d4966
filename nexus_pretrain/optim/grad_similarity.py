"""Pairwise cosine similarity of per-domain full gradients: the quantity Nexus is meant to raise."""

from __future__ import annotations

from itertools import combinations
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from nexus_pretrain.optim.dtensor import full_tensor as _full

Gradient = List[torch.Tensor]
"""One fp32 tensor per trainable parameter, in ``model.parameters()`` order."""


def named_gradients(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    batches: Mapping[str, Any],
    accumulate: bool = False,
) -> Dict[str, Gradient]:
    """The fp32 gradient of loss_fn(model, batch) for every named batch, over all trainable parameters; with
    ``accumulate`` each named batch is a sequence of micro-batches and its gradient is the mean of theirs
    (one micro-batch's graph in memory at a time).

    Taken with torch.autograd.grad: existing .grad fields and the parameters are left untouched. A
    parameter the loss does not reach gets a zero gradient.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    grads: Dict[str, Gradient] = {}
    for name, batch in batches.items():
        parts = list(batch) if accumulate else [batch]
        total = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        for part in parts:
            raw = torch.autograd.grad(loss_fn(model, part), params, allow_unused=True)
            for t, g in zip(total, raw):
                if g is not None:
                    t.add_(g.float(), alpha=1 / len(parts))
        grads[name] = total
    return grads


def gradient_dot(a: Gradient, b: Gradient) -> torch.Tensor:
    """Dot product of two gradients as flattened vectors, in fp64."""
    # Per-tensor sums (reduced across ranks for DTensors) equal the dot of the flattened vectors.
    return torch.stack([_full(torch.sum(x.float() * y.float())).to(torch.float64) for x, y in zip(a, b)]).sum()


def combine_gradients(grads: Mapping[str, Gradient], weights: Mapping[str, float]) -> Gradient:
    """sum_d w_d g_d / sum_d w_d: the gradient of the weighted mixture of the losses (exact, by linearity)."""
    total = float(sum(weights.values()))
    if total <= 0:
        raise ValueError(f"mixture weights {dict(weights)} do not sum to a positive number")
    names = list(weights)
    out = [torch.zeros_like(t) for t in grads[names[0]]]
    for name in names:
        for acc, g in zip(out, grads[name]):
            acc.add_(g, alpha=float(weights[name]) / total)
    return out


def gradient_cosines(grads: Mapping[str, Gradient],
                     pairs: Optional[Iterable[Tuple[str, str]]] = None) -> Dict[str, float]:
    """{"cos/<a>-<b>": cosine} for the given pairs of named gradients (default: every pair, in order).

    A pair may name one gradient twice (its cosine with itself, 1 up to rounding).
    """
    pairs = list(combinations(grads, 2) if pairs is None else pairs)
    sq_norm: Dict[str, torch.Tensor] = {}
    for name in {n for pair in pairs for n in pair}:
        if name not in grads:
            raise KeyError(f"no gradient named {name!r}; have {', '.join(grads)}")
        sq_norm[name] = gradient_dot(grads[name], grads[name])
    result: Dict[str, float] = {}
    for a, b in pairs:
        cos = gradient_dot(grads[a], grads[b]) / (sq_norm[a] * sq_norm[b]).sqrt().clamp_min(1e-30)
        result[f"cos/{a}-{b}"] = float(cos)
    return result


def domain_gradient_cosine(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    batches: Dict[str, Any],
    accumulate: bool = False,
) -> Dict[str, float]:
    """Cosine similarity between the gradients of loss_fn(model, batch) for every pair of domains (with
    ``accumulate``, each domain's batch is a sequence of micro-batches: see named_gradients).

    Gradients are over all trainable parameters, in fp32, taken with torch.autograd.grad (existing
    .grad fields and the parameters are left untouched). Returns {"cos/<a>-<b>": ..., "cos/mean": mean
    over pairs}, pairs in the order of ``batches``.
    """
    if len(batches) < 2:
        raise ValueError(f"batches has {len(batches)} domain(s); give at least two to compare")
    result = gradient_cosines(named_gradients(model, loss_fn, batches, accumulate))
    result["cos/mean"] = sum(result.values()) / len(result)
    return result


def mean_over(results: Sequence[Mapping[str, float]]) -> Dict[str, float]:
    """Key-wise mean of several result dicts (keys of the first; every dict must have them)."""
    if not results:
        raise ValueError("no results to average")
    return {k: sum(float(r[k]) for r in results) / len(results) for k in results[0]}
