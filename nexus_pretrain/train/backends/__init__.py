"""Parallelism backends behind the small interface in base.py."""

from nexus_pretrain.config import BackendConfig
from nexus_pretrain.train.backends.base import Backend
from nexus_pretrain.train.backends.single import SingleDevice


def build_backend(cfg: BackendConfig, compile: bool = False, activation_checkpointing: bool = False) -> Backend:
    """The backend named by backend.name."""
    if cfg.name == "single":
        return SingleDevice(cfg, compile=compile, activation_checkpointing=activation_checkpointing)
    raise ValueError(f"backend.name={cfg.name!r} is not one of single")


__all__ = ["Backend", "SingleDevice", "build_backend"]
