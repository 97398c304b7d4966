"""Build the trainer's StepOptimizer from OptimConfig: AdamW, Muon (+AdamW) or Nexus around either."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from nexus_pretrain.optim.base import Accumulate, StepOptimizer
from nexus_pretrain.optim.muon import Muon, MuonAdamW
from nexus_pretrain.optim.nexus import Nexus

if TYPE_CHECKING:  # only attributes are read, so the optimizers import without Hydra (GPU images)
    from nexus_pretrain.config import OptimConfig

NON_HIDDEN_MARKERS = ("embed", "lm_head", "output")
"""A parameter whose name contains one of these is an embedding or output head: AdamW under Muon."""


def _trainable(model: torch.nn.Module) -> List[Tuple[str, torch.nn.Parameter]]:
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def weight_decay_groups(named: Sequence[Tuple[str, torch.nn.Parameter]], weight_decay: float) -> List[Dict[str, Any]]:
    """Param groups: weight decay on >= 2-D weights, none on norms and biases (empty groups dropped)."""
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    """Whether Muon optimizes this parameter: 2-D and not an embedding or output head."""
    return p.ndim == 2 and not any(marker in name for marker in NON_HIDDEN_MARKERS)


def fused_row_splits(model: torch.nn.Module, name: str, p: torch.Tensor) -> Optional[List[int]]:
    """Row blocks of a fused projection (wqkv: q, k, v; w13: gate, up); None when not fused."""
    module_name, _, leaf = name.rpartition(".")
    if leaf != "weight":
        return None
    owner_name, _, proj = module_name.rpartition(".")
    if proj == "w13" and p.shape[0] % 2 == 0:
        return [p.shape[0] // 2] * 2
    if proj == "wqkv":
        attention = model.get_submodule(owner_name) if owner_name else model
        heads = [getattr(attention, key, None) for key in ("n_heads", "n_kv_heads", "head_dim")]
        if None in heads:
            return None
        n_heads, n_kv_heads, head_dim = heads
        splits = [n_heads * head_dim, n_kv_heads * head_dim, n_kv_heads * head_dim]
        return splits if sum(splits) == p.shape[0] else None
    return None


def _adamw(groups: List[Dict[str, Any]], cfg: "OptimConfig") -> torch.optim.AdamW:
    params = [p for g in groups for p in g["params"]]
    fused = cfg.fused if cfg.fused is not None else all(p.is_cuda for p in params)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused)


def build_outer(cfg: "OptimConfig", model: torch.nn.Module, name: str) -> Any:
    """The torch optimizer itself: name is adamw or muon (Muon on hidden matrices, AdamW on the rest)."""
    named = _trainable(model)
    if not named:
        raise ValueError("model has no trainable parameters")
    if name == "adamw":
        return _adamw(weight_decay_groups(named, cfg.weight_decay), cfg)
    if name != "muon":
        raise ValueError(f"optimizer {name!r} is not one of adamw, muon")
    hidden = [(n, p) for n, p in named if is_hidden_matrix(n, p)]
    rest = [(n, p) for n, p in named if not is_hidden_matrix(n, p)]
    muon = None
    if hidden:
        splits = {p: s for n, p in hidden if (s := fused_row_splits(model, n, p)) is not None}
        muon = Muon(
            [p for _, p in hidden],
            lr=cfg.muon_lr if cfg.muon_lr is not None else cfg.lr,
            weight_decay=cfg.weight_decay,
            momentum=cfg.muon_momentum,
            ns_steps=cfg.muon_ns_steps,
            adjust_lr_fn="match_rms_adamw",
            row_splits=splits,
        )
    adamw = _adamw(weight_decay_groups(rest, cfg.weight_decay), cfg) if rest else None
    return MuonAdamW(muon, adamw)


def build_optimizer(cfg: "OptimConfig", model: torch.nn.Module, seed: int = 0, compile: bool = False) -> StepOptimizer:
    """The StepOptimizer named by cfg.name (adamw, muon, nexus) on the model's trainable parameters;
    ``compile``: torch.compile Nexus's inner step."""
    if cfg.name in ("adamw", "muon"):
        return Accumulate(build_outer(cfg, model, cfg.name), cfg.max_grad_norm)
    if cfg.name != "nexus":
        raise ValueError(f"optim.name={cfg.name!r} is not one of adamw, muon, nexus")
    if cfg.outer not in ("adamw", "muon"):
        raise ValueError(f"optim.outer={cfg.outer!r} is not one of adamw, muon")
    return build_nexus(cfg, build_outer(cfg, model, cfg.outer), seed=seed, compile=compile)


def build_nexus(cfg: "OptimConfig", outer: torch.optim.Optimizer, seed: int = 0, compile: bool = False,
                norm_fn: Optional[Callable[[List[torch.Tensor]], torch.Tensor]] = None) -> Nexus:
    """Nexus with cfg's settings around ``outer`` (the one place a Nexus is made from a config; the
    DeepSpeed backend passes its partitions' outer optimizer and a cross-rank ``norm_fn``)."""
    return Nexus(outer, inner_lr=cfg.inner_lr, variant=cfg.variant, offload_anchor=cfg.offload_anchor,
                 max_grad_norm=cfg.max_grad_norm, inner_lr_follows_schedule=cfg.inner_lr_follows_schedule,
                 seed=seed, norm_fn=norm_fn, compile_inner_step=compile)
