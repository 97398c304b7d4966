"""PyTorch FSDP2: ``fully_shard`` per transformer block and for the root, one process per device.

Parameters are sharded fp32 DTensors (the master weights). On GPU with precision bf16/auto a
MixedPrecisionPolicy gathers them in bf16 for compute and reduces gradients in fp32; no autocast is
needed. Optimizers, Nexus included, step on the local shards; global norms reduce across ranks
through DTensor. Gradient accumulation without Nexus skips the reduce-scatter on all but the last
micro-batch (``set_requires_gradient_sync``). With ``backend.replicate > 1`` the mesh is 2-D and
fully_shard does HSDP: shard within a group, replicate across groups.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Tuple

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

from nexus_pretrain.config import BackendConfig
from nexus_pretrain.model.float8 import apply_float8
from nexus_pretrain.model.llama import compile_regions
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.train.backends import dcp
from nexus_pretrain.train.backends.launch_env import export_launcher_env, mean_over_ranks, process_group_backend
from nexus_pretrain.train.backends.single import autocast_dtype, resolve_device

if TYPE_CHECKING:
    from nexus_pretrain.config import OptimConfig
    from nexus_pretrain.optim.base import StepOptimizer


def init_process_group(cfg: BackendConfig) -> Tuple[int, int, int]:
    """Join the process group the launcher described (torchrun, deepspeed or Slurm); returns rank, world
    size and local rank."""
    if not dist.is_initialized():
        export_launcher_env()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        backend = process_group_backend(cfg.dist_backend, resolve_device(cfg.device))
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=timedelta(minutes=cfg.timeout_minutes))
    return dist.get_rank(), dist.get_world_size(), local_rank


class FSDP2:
    """Backend that shards parameters, gradients and optimizer state over ranks with fully_shard."""

    name = "fsdp2"

    def __init__(self, cfg: BackendConfig, compile: bool = False, activation_checkpointing: bool = False):
        self.cfg = cfg
        self.rank, self.world_size, local_rank = init_process_group(cfg)
        self.device = resolve_device(cfg.device, local_rank)
        self.compute_dtype = autocast_dtype(cfg.precision, self.device)
        self.compile = compile
        self.activation_checkpointing = activation_checkpointing
        if self.world_size % cfg.replicate:
            raise ValueError(f"backend.replicate={cfg.replicate} does not divide the world size {self.world_size}")
        if cfg.replicate > 1:
            self.mesh = init_device_mesh(self.device.type, (cfg.replicate, self.world_size // cfg.replicate),
                                         mesh_dim_names=("replicate", "shard"))
        else:
            self.mesh = init_device_mesh(self.device.type, (self.world_size,), mesh_dim_names=("shard",))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def setup(self, model: torch.nn.Module, optim_cfg: "OptimConfig", seed: int) -> Tuple[torch.nn.Module, "StepOptimizer"]:
        """Convert to FP8 (model.float8), shard each block and the root (blocks compiled if asked), then
        build the optimizer on the shards."""
        model = model.to(self.device)
        model.activation_checkpointing = self.activation_checkpointing
        apply_float8(model, self.device, sharded=True)  # FP8 weight all-gather where the recipe allows
        if self.compile:
            compile_regions(model)  # before fully_shard, whose hooks then run around the compiled regions
        kwargs = {"mesh": self.mesh}
        if self.compute_dtype is not None:
            kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=self.compute_dtype, reduce_dtype=torch.float32)
        if self.cfg.cpu_offload:
            kwargs["offload_policy"] = CPUOffloadPolicy(pin_memory=self.device.type == "cuda")
        for block in model.layers:
            fully_shard(block, reshard_after_forward=self.cfg.reshard_after_forward, **kwargs)
        # The root keeps embeddings, final norm and output; no point in freeing them right before backward.
        fully_shard(model, reshard_after_forward=False, **kwargs)
        self._root = model  # backward() toggles its gradient sync
        return model, build_optimizer(optim_cfg, model, seed=seed, compile=self.compile)

    def autocast(self) -> AbstractContextManager:
        # MixedPrecisionPolicy already computes in bf16; autocast on top would only add casts.
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, sync: bool) -> None:
        self._root.set_requires_gradient_sync(sync)
        loss.backward()

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        return mean_over_ranks(value)

    def save(self, directory: Path, model: torch.nn.Module, optimizer: "StepOptimizer"):
        return dcp.save(directory, model, optimizer, asynchronous=self.cfg.async_checkpoint)

    def load(self, directory: Path, model: torch.nn.Module, optimizer: "StepOptimizer") -> None:
        dcp.load(directory, model, optimizer)

    def full_state_dict(self, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.is_main else {}

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
