"""What a backend may ask of the optimizer a config describes, so that no backend branches on its name.

Torch-free, so config validation can use it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

OPTIMIZERS = ("adamw", "muon", "nexus")
"""optim.name: a plain optimizer, or Nexus wrapping the outer one."""
OUTER_OPTIMIZERS = ("adamw", "muon")
"""optim.outer: the torch optimizer that takes Nexus's outer step."""
NEXUS_VARIANTS = ("nexus", "nexus_dot", "nsgd", "random", "parallel")
"""optim.variant: Nexus (Alg. 3), its ablations and its controls."""


@dataclass(frozen=True)
class OptimizerTraits:
    """The properties of a configured optimizer that decide how a backend runs it."""

    outer: str
    """The torch optimizer that takes the outer step: adamw or muon."""
    pseudo_gradient: bool
    """Its outer step consumes a pseudo-gradient the wrapper builds from the raw gradients (Nexus): the
    backend must hand it every gradient unclipped and keep the wrapper's state."""
    consumes_each_inner_batch: bool
    """It reads each inner batch's own mean gradient (reduced at the end of every inner batch); otherwise
    gradients accumulate over the whole step and are reduced once."""
    needs_whole_matrices: bool
    """Its update needs every 2-D weight whole (Muon's orthogonalization), not flat partitions (ZeRO)."""
    inner_step_length: Optional[float] = None
    """The L2 length (over all parameters) of each inner step that moves the weights within the window
    and so builds Nexus's alignment term: inner_lr for the nexus variant (normalized SGD). None where no
    such step is taken (AdamW, Muon; nsgd, and the random and parallel controls, which have no alignment
    term) or its length follows the gradient (nexus_dot)."""


def optimizer_traits(cfg: Any) -> OptimizerTraits:
    """The traits of the optimizer ``cfg`` (an OptimConfig) describes."""
    wrapped = cfg.name == "nexus"
    outer = cfg.outer if wrapped else cfg.name
    return OptimizerTraits(outer=outer, pseudo_gradient=wrapped,
                           consumes_each_inner_batch=wrapped and cfg.variant != "nsgd",
                           needs_whole_matrices=outer == "muon",
                           inner_step_length=float(cfg.inner_lr) if wrapped and cfg.variant == "nexus" else None)
