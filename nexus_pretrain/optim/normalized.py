"""Normalized-SGD primitives of Nexus's inner step: the global gradient norm and the fused update."""

from __future__ import annotations

from typing import List

import torch

from nexus_pretrain.optim.dtensor import full_tensor as _full

MIN_NORM = 1e-12
"""Floor of the gradient norm in a normalized step: a zero gradient then gives a zero step, not NaN."""


def global_norm(tensors: List[torch.Tensor]) -> torch.Tensor:
    """L2 norm over all tensors as a 0-d device tensor; DTensors are reduced across ranks."""
    return _full(torch.nn.utils.get_total_norm(tensors, foreach=True))


def normalized_step(params: List[torch.Tensor], grads: List[torch.Tensor], scale: torch.Tensor) -> None:
    """params -= grads * scale, with scale a 0-d device tensor (no host sync), in one pass."""
    # One fused pass p -= g * scale: 6.6 ms against 12.9 ms for scale-then-subtract at 1.3B parameters
    # on an H100 (scripts/bench_inner_step.py). Compiled, Inductor turns it into a few horizontally fused
    # kernels instead of one broadcasting addcmul_ launch per parameter.
    torch._foreach_addcmul_(params, grads, [scale] * len(grads), value=-1.0)
