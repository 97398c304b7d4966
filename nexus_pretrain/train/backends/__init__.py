"""Parallelism backends behind the small interface in base.py."""

from nexus_pretrain.config import BackendConfig
from nexus_pretrain.train.backends.base import Backend
from nexus_pretrain.train.backends.deepspeed import DeepSpeedBackend
from nexus_pretrain.train.backends.fsdp2 import FSDP2
from nexus_pretrain.train.backends.single import SingleDevice


def build_backend(cfg: BackendConfig, compile: bool = False, activation_checkpointing: bool = False,
                  micro_batch: int = 1) -> Backend:
    """The backend named by backend.name (distributed ones join the launcher's process group)."""
    if cfg.name == "single":
        return SingleDevice(cfg, compile=compile, activation_checkpointing=activation_checkpointing)
    if cfg.name == "fsdp2":
        return FSDP2(cfg, compile=compile, activation_checkpointing=activation_checkpointing)
    if cfg.name == "deepspeed":
        return DeepSpeedBackend(cfg, compile=compile, activation_checkpointing=activation_checkpointing,
                                micro_batch=micro_batch)
    raise ValueError(f"backend.name={cfg.name!r} is not one of single, fsdp2, deepspeed")


__all__ = ["Backend", "SingleDevice", "build_backend"]
