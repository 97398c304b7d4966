"""Muon for hidden 2-D weight matrices, AdamW for everything else, behind one optimizer-like object.

``Muon`` reproduces ``torch.optim.Muon`` (same Newton-Schulz coefficients and bf16 iteration, Nesterov
momentum as a lerp, decoupled weight decay with the unadjusted LR, the same LR adjustment) and adds one
thing torch's class cannot do: orthogonalize row blocks of one parameter separately. The model stores
Q/K/V as one weight ``wqkv`` and gate/up as ``w13``; with ``row_splits`` each projection is
orthogonalized on its own, exactly as Muon would treat the unfused Llama the paper trains (and as
torch.optim.Muon does on separate matrices). That costs nothing extra: Newton-Schulz on the blocks is
cheaper than on the stacked matrix. It does not depend on torch shipping Muon. DTensor parameters
sharded on dim 0 (FSDP2) are orthogonalized on the gathered full matrix, so sharding does not change
the update.

LR: ``adjust_lr_fn="match_rms_adamw"`` (Moonshot's rule, ``lr * 0.2 * sqrt(max(A, B))`` per block)
makes the update RMS match AdamW's, so Muon and AdamW groups share one LR and one schedule.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from nexus_pretrain.optim.dtensor import is_dtensor as _is_dtensor

try:
    from torch.distributed.tensor import Shard, distribute_tensor
except ImportError:  # pragma: no cover - torch built without distributed
    pass


NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic, as in torch.optim.Muon
NS_EPS = 1e-7
ADJUST_LR_FNS = ("original", "match_rms_adamw")


def zeropower_via_newtonschulz(grad: torch.Tensor, ns_steps: int, eps: float = NS_EPS) -> torch.Tensor:
    """Approximate orthogonalization U V^T of a 2-D matrix (bf16 Newton-Schulz, torch.optim.Muon's)."""
    a, b, c = NS_COEFFICIENTS
    x = grad.bfloat16()
    tall = grad.size(0) > grad.size(1)
    if tall:
        x = x.T
    x.div_(x.norm().clamp(min=eps))
    for _ in range(ns_steps):
        gram = x @ x.T
        gram_update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, gram_update, x, beta=a)
    return x.T if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str, shape: Sequence[int]) -> float:
    """The per-matrix LR Muon applies to an orthogonalized update of the given shape."""
    rows, cols = shape[:2]
    if adjust_lr_fn == "original":
        return lr * math.sqrt(max(1.0, rows / cols))
    return lr * 0.2 * math.sqrt(max(rows, cols))


class Muon(torch.optim.Optimizer):
    """Orthogonalized momentum for 2-D parameters; ``row_splits`` maps a parameter to its row blocks."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str = "match_rms_adamw",
        row_splits: Optional[Mapping[torch.Tensor, Sequence[int]]] = None,
    ):
        if lr < 0:
            raise ValueError(f"lr={lr} must be >= 0")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum={momentum} must be in [0, 1)")
        if weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay} must be >= 0")
        if not 0 < ns_steps < 100:
            raise ValueError(f"ns_steps={ns_steps} must be in [1, 99]")
        if adjust_lr_fn not in ADJUST_LR_FNS:
            raise ValueError(f"adjust_lr_fn={adjust_lr_fn!r} is not one of {', '.join(ADJUST_LR_FNS)}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        self.row_splits: Dict[int, Tuple[int, ...]] = {}
        self._row_ranges: Dict[int, Tuple[int, int]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"params: Muon takes 2-D matrices only, got shape {tuple(p.shape)}")
        for p, splits in (row_splits or {}).items():
            if sum(splits) != p.shape[0]:
                raise ValueError(f"row_splits: blocks {list(splits)} do not sum to {p.shape[0]} rows")
            self.row_splits[id(p)] = tuple(int(s) for s in splits)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One Muon update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, momentum = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                p.mul_(1 - lr * wd)
                self._add_orthogonalized(p, update, lr, group)
        return loss

    def _add_orthogonalized(self, p: torch.Tensor, update: torch.Tensor, lr: float, group: Dict[str, Any]) -> None:
        """p -= adjusted_lr * NS(update), block by block along the rows."""
        blocks = self.row_splits.get(id(p), (p.shape[0],))
        if not _is_dtensor(p):
            for rows, target in zip(update.split(blocks, dim=0), p.split(blocks, dim=0)):
                ortho = zeropower_via_newtonschulz(rows, group["ns_steps"])
                target.add_(ortho, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], target.shape))
            return
        # Sharded (FSDP2): orthogonalize the gathered full matrix, so the result equals the unsharded
        # update; each rank only computes the blocks that overlap its own rows.
        full = update.full_tensor()
        start, stop = self._local_row_range(p)
        local = p.to_local()
        offset = 0
        for rows in full.split(blocks, dim=0):
            first, offset = offset, offset + rows.shape[0]
            lo, hi = max(first, start), min(offset, stop)
            if lo >= hi:
                continue
            ortho = zeropower_via_newtonschulz(rows, group["ns_steps"])
            local[lo - start:hi - start].add_(
                ortho[lo - first:hi - first], alpha=-adjusted_lr(lr, group["adjust_lr_fn"], rows.shape)
            )

    def _local_row_range(self, p: torch.Tensor) -> Tuple[int, int]:
        """Global rows [start, stop) of this rank's shard of a DTensor parameter (cached)."""
        if id(p) not in self._row_ranges:
            if any(isinstance(pl, Shard) and pl.dim != 0 for pl in p.placements):
                raise NotImplementedError(f"Muon supports DTensor parameters sharded on dim 0 only, got {p.placements}")
            rows = torch.arange(p.shape[0], device=p.to_local().device).unsqueeze(1)
            local_rows = distribute_tensor(rows, p.device_mesh, p.placements, src_data_rank=None).to_local()[:, 0]
            start = int(local_rows[0]) if local_rows.numel() else 0
            self._row_ranges[id(p)] = (start, start + local_rows.numel())
        return self._row_ranges[id(p)]


class MuonAdamW:
    """Muon on hidden matrices plus AdamW on the rest, used like one torch optimizer.

    ``param_groups`` lists Muon's groups then AdamW's (the live dicts, so LR scaling reaches both);
    ``state_dict`` nests the two optimizers' state dicts under "muon" and "adamw". Either part may be
    None when the model has no parameter of that kind.
    """

    def __init__(self, muon: Optional[Muon], adamw: Optional[torch.optim.Optimizer]):
        if muon is None and adamw is None:
            raise ValueError("muon and adamw are both None; give at least one optimizer")
        self.muon = muon
        self.adamw = adamw

    def _parts(self) -> List[Tuple[str, torch.optim.Optimizer]]:
        return [(name, opt) for name, opt in (("muon", self.muon), ("adamw", self.adamw)) if opt is not None]

    @property
    def param_groups(self) -> List[Dict[str, Any]]:
        """Muon's groups followed by AdamW's (recomputed: load_state_dict replaces the group dicts)."""
        return [group for _, opt in self._parts() for group in opt.param_groups]

    @property
    def state(self) -> Dict[torch.Tensor, Any]:
        """Per-parameter state of both optimizers (read-only view)."""
        merged: Dict[torch.Tensor, Any] = {}
        for _, opt in self._parts():
            merged.update(opt.state)
        return merged

    def step(self, closure: Any = None) -> Any:
        """Step both optimizers."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for _, opt in self._parts():
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of all parameters."""
        for _, opt in self._parts():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> Dict[str, Any]:
        """Both optimizers' state dicts."""
        return {name: opt.state_dict() for name, opt in self._parts()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what state_dict returned."""
        for name, opt in self._parts():
            if name not in state:
                raise ValueError(f"state has no {name!r} entry; it was saved from a different parameter split")
            opt.load_state_dict(state[name])

    def __repr__(self) -> str:
        return f"MuonAdamW(muon={self.muon!r}, adamw={self.adamw!r})"
