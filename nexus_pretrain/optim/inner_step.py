"""How far one Nexus inner step moves each weight, relative to the weights' size: what decides whether a
bf16 or FP8 forward still sees the inner displacement that Nexus's alignment term is made of
(scripts/nexus_precision.py, results/nexus-precision/)."""

from __future__ import annotations

import math
from typing import Iterable, Tuple

import torch


def weight_scale(tensors: Iterable[torch.Tensor]) -> Tuple[int, float]:
    """(elements in all ``tensors``, root mean square of the entries of those with two or more dimensions:
    the weight matrices, whose rounding the forward sees)."""
    n, squares, matrix_entries = 0, 0.0, 0
    for t in tensors:
        n += t.numel()
        if t.dim() >= 2:
            squares += torch.linalg.vector_norm(t.detach()).item() ** 2  # no copy of the tensor
            matrix_entries += t.numel()
    return n, math.sqrt(squares / max(matrix_entries, 1))


def step_ratio(step_length: float, n: int, rms: float) -> float:
    """One inner step's displacement per weight relative to the weights' rms: a step of L2 length
    ``step_length`` spread over ``n`` weights moves each by step_length / sqrt(n) on average."""
    return step_length / (math.sqrt(n) * rms)
