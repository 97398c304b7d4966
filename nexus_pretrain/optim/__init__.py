"""Optimizers behind the trainer's step-function interface (see base.StepOptimizer)."""

from nexus_pretrain.optim.base import Accumulate, StepOptimizer, clip_gradients, scale_learning_rates
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.optim.muon import Muon, MuonAdamW
from nexus_pretrain.optim.nexus import Nexus

__all__ = [
    "Accumulate", "Muon", "MuonAdamW", "Nexus", "StepOptimizer", "build_optimizer", "clip_gradients",
    "scale_learning_rates",
]
