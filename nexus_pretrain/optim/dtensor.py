"""Helpers that let optimizer code treat plain tensors and FSDP2's DTensor shards alike."""

from __future__ import annotations

import torch

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - torch built without distributed
    DTensor = None  # type: ignore[assignment,misc]


def is_dtensor(t: torch.Tensor) -> bool:
    """Whether t is a DTensor (sharded or replicated over a device mesh)."""
    return DTensor is not None and isinstance(t, DTensor)


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The tensor this rank stores (its shard for a DTensor); in-place ops on it update t."""
    return t.to_local() if is_dtensor(t) else t


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor (gathered across ranks for a DTensor)."""
    return t.full_tensor() if is_dtensor(t) else t


def like_param(p: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """Wrap a local shard so it has p's layout (a DTensor when p is one)."""
    if not is_dtensor(p):
        return local
    return DTensor.from_local(local, p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride())
