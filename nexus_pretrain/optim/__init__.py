"""Optimizers behind the trainer's step-function interface (see base.StepOptimizer).

The names below load on first use, so that torch-free modules of this package (traits.py, read by config
validation) import without torch.
"""

import importlib

_EXPORTS = {
    "Accumulate": "base", "StepOptimizer": "base", "clip_gradients": "base", "scale_learning_rates": "base",
    "build_optimizer": "build", "Muon": "muon", "MuonAdamW": "muon", "Nexus": "nexus",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
