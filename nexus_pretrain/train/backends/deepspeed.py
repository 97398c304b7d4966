"""DeepSpeed ZeRO-1/2/3 (``backend.name=deepspeed``, ``backend.zero_stage``), one process per device.

The engine's JSON comes from our config (``ds_config``): micro-batch size, ZeRO stage, optimizer
offload, bf16 on GPU (DeepSpeed casts the module to bf16 and keeps fp32 master partitions; no autocast
is needed), no DeepSpeed scheduler (the trainer's ``set_lr_multiplier`` writes the lr into the torch
optimizer that ZeRO steps) and ``gradient_accumulation_steps=1``: accumulation windows are ours.

How the trainer's step loop maps onto the engine
-------------------------------------------------
``backward`` sets the engine's accumulation boundary to the trainer's ``sync`` flag
(``engine.set_gradient_accumulation_boundary``) and calls ``engine.backward(loss, scale_wrt_gas=False)``
(the trainer already weighted the loss). The trainer passes ``sync=True`` on the last pass of every inner
batch when the optimizer consumes each inner batch (Nexus), else on the step's last pass only.

* AdamW (``optim.name=adamw``) and Nexus ``variant=nsgd`` accumulate over the whole step; ``step`` calls
  ``engine.step()`` once per step. AdamW is a plain ``torch.optim.AdamW`` client optimizer with
  build.py's weight-decay groups; clipping is DeepSpeed's ``gradient_clipping`` (the same rule as
  ``clip_grad_norm_``: ``coef = max / (norm + 1e-6)`` capped at 1, global norm over ranks) and
  ``grad_norm`` is ``engine.get_global_grad_norm()``.
* Nexus (variants nexus, nexus_dot, random, parallel) needs every inner batch's gradient reduced and an
  inner step on the fp32 master weights before the next inner batch. So the last pass of every inner
  batch is an accumulation boundary (gradients are reduce-scattered and averaged over ranks) and
  ``micro_step`` calls ``engine.step()``; the K-th (``optim.inner_steps``) closes the window.
  The client optimizer handed to ZeRO is ``NexusClient`` (zero_nexus.py): ZeRO swaps its param groups' tensors for
  its flat fp32 partitions and calls its ``step()``; the client runs our ``Nexus`` class (optim/nexus.py)
  on those partitions: ``Nexus.micro_step`` (inner normalized step, the global gradient norm taken by
  ``norm_fn`` = squared partition norms all-reduced over the data-parallel group), and on the window's
  last micro-batch also ``Nexus.step`` (pseudo-gradient ``anchor - p``, ``p = anchor``, clipping with
  the same global norm, then a torch AdamW built on the partitions with build.py's groups). DeepSpeed
  then copies the fp32 partitions into the module's parameters (all-gather for ZeRO-1/2; the
  partitioned buffers ZeRO-3 gathers at the next forward) exactly as after any optimizer step.
  DeepSpeed's own clipping is off here (the inner step needs the raw gradient), and its anchor, window
  counters and RNG are the ``Nexus`` object's, on this rank's partitions.

  One detail of ZeRO makes the client wait for the whole engine step: ZeRO calls the client's
  ``step()`` once per param group (ZeRO-1/2) or sub-group (ZeRO-3; ``sub_group_size`` is set so that
  each param group is one sub-group), each time with only that group's gradient, and copies that
  group's fp32 partition into the module right after. A normalized step and the pseudo-gradient
  clipping need the norm over all groups, so the client records each group's gradient and runs Nexus
  on all groups in the call for the last group; it then re-publishes the earlier groups' fp32
  partitions into the module's (bit16) partitions. That, and reading the fp32 partition lists, are the
  only uses of ZeRO internals; both live in zero_nexus.py (``republish_partition``, ``fp32_partitions``).

Limitations: ``discard`` (trainer.skip_nonfinite > 0) is not supported, since for Nexus the outer step
happens inside the engine step of the window's last micro-batch, before the trainer looks at the loss.
On CPU, DeepSpeed's shared-memory all-reduce op (used only for inference) is not JIT-compiled.

Checkpoints are DeepSpeed's own (``engine.save_checkpoint``/``load_checkpoint``, tag ``engine``): the
module, the fp32 master partitions and the client optimizer's state dict per rank, which for Nexus is
``Nexus.state_dict()`` (outer AdamW state, RNG of the random variant), so a reload continues bit-exactly
at the same world size. Checkpoints are taken between windows (mid-window saves raise). Muon is not
supported (its orthogonalization needs whole matrices, which ZeRO partitions flat).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import os
from contextlib import AbstractContextManager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

from nexus_pretrain.config import BackendConfig
from nexus_pretrain.model.llama import compile_regions
from nexus_pretrain.optim.base import clip_coefficient, record_peak_learning_rates, scale_learning_rates
from nexus_pretrain.optim.build import build_nexus, weight_decay_groups
from nexus_pretrain.optim.traits import optimizer_traits
from nexus_pretrain.train.backends.launch_env import export_launcher_env, mean_over_ranks, process_group_backend
from nexus_pretrain.train.backends.single import autocast_dtype, resolve_device
from nexus_pretrain.train.backends.zero_nexus import NexusClient, dp_norm, fp32_partitions, republish_partition

if TYPE_CHECKING:
    from nexus_pretrain.config import OptimConfig
    from nexus_pretrain.optim.base import StepOptimizer

CHECKPOINT_TAG = "engine"
"""The tag (sub-folder) DeepSpeed writes its checkpoint files into, inside the directory given to save."""

_ZERO3_ONE_SUBGROUP = 10**15
"""ZeRO-3 sub_group_size: large enough that every param group is one sub-group (see module docstring)."""


def import_deepspeed():
    """The deepspeed module, or an ImportError that says how to install it."""
    try:
        import deepspeed  # optional: gpu extra
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "backend.name=deepspeed needs DeepSpeed: `DS_BUILD_OPS=0 pip install deepspeed==0.19.8` "
            f"(import failed: {e})"
        ) from e
    return deepspeed


def _skip_cpu_shm_op() -> None:
    """Do not JIT-compile DeepSpeed's CPU shared-memory all-reduce op (minutes of C++ compilation at the
    first init_distributed on a CPU machine). DeepSpeed uses it only in ``inference_all_reduce``; training
    collectives go through torch.distributed (gloo) either way."""

    # importlib: `import deepspeed.comm.torch as m` would bind deepspeed.comm's attribute `torch` (torch itself).
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def _merge(base: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """base updated by overrides, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_supported(optim_cfg: "OptimConfig") -> None:
    """Raise ValueError for optimizers this backend cannot run."""
    if optimizer_traits(optim_cfg).needs_whole_matrices:
        raise ValueError("optim Muon is not supported with backend.name=deepspeed (ZeRO partitions parameters "
                         "flat, Muon needs whole matrices); use backend.name=fsdp2 or an adamw outer optimizer")


def ds_config(cfg: BackendConfig, optim_cfg: "OptimConfig", micro_batch: int = 1, bf16: bool = False,
              pin_memory: bool = False, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The DeepSpeed JSON config for our backend and optimizer config (pure; no DeepSpeed import)."""
    if cfg.zero_stage not in (1, 2, 3):
        raise ValueError(f"backend.zero_stage={cfg.zero_stage} is not one of 1, 2, 3")
    zero: Dict[str, Any] = {"stage": cfg.zero_stage, "elastic_checkpoint": False, "load_from_fp32_weights": True}
    if cfg.zero_stage == 3:
        zero["sub_group_size"] = _ZERO3_ONE_SUBGROUP
    if cfg.cpu_offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin_memory}
    config: Dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(micro_batch),
        "gradient_accumulation_steps": 1,
        # AdamW: DeepSpeed clips the accumulated gradient (clip_grad_norm_'s rule). Nexus (nsgd included)
        # clips its pseudo-gradient itself, and its inner steps need the raw micro-batch gradient.
        "gradient_clipping": 0.0 if optimizer_traits(optim_cfg).pseudo_gradient else float(optim_cfg.max_grad_norm),
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,  # our torch AdamW also steps the offloaded partitions
        "bf16": {"enabled": bool(bf16)},
        "fp16": {"enabled": False},
        # Gradients are reduced in fp32 (as fsdp2 does); the bf16 module gradients are upcast first.
        "communication_data_type": "fp32",
        "steps_per_print": 2**62,
        "wall_clock_breakdown": False,
    }
    return _merge(config, overrides or {})


class DeepSpeedStep:
    """The trainer's StepOptimizer over a DeepSpeed engine (see the module docstring)."""
    def __init__(self, engine: Any, optim_cfg: "OptimConfig", client: torch.optim.Optimizer,
                 nexus_client: Optional[NexusClient]):
        self.engine = engine
        self.consumes_each_inner_batch = optimizer_traits(optim_cfg).consumes_each_inner_batch
        self.accumulate = not self.consumes_each_inner_batch
        self.inner_steps = optim_cfg.inner_steps
        self.max_grad_norm = optim_cfg.max_grad_norm
        self.client = nexus_client
        self.nexus = nexus_client.nexus if nexus_client is not None else None
        self.outer = self.nexus.outer if self.nexus is not None else client
        record_peak_learning_rates(self.outer)
        self.window_end = False
        self.micro_steps = 0

    def set_lr_multiplier(self, multiplier: float) -> None:
        """Scale the lr of the torch optimizer DeepSpeed steps (and gamma if it follows the schedule)."""
        if self.nexus is not None:
            self.nexus.set_lr_multiplier(multiplier)
        else:
            scale_learning_rates(self.outer, multiplier)

    def micro_step(self) -> None:
        """Nexus: one engine step (inner step; on the step's last inner batch also the outer step)."""
        self.micro_steps += 1
        if self.accumulate:
            return
        if not self.window_end:
            raise RuntimeError("backend.backward(loss, sync=True) must mark the last pass of every inner batch")
        self.client.close_window = self.micro_steps == self.inner_steps
        self.engine.step()

    def step(self, skip_nonfinite: bool = False) -> Dict[str, torch.Tensor]:
        """AdamW/nsgd: the engine step on the accumulated gradient; Nexus: the window closed in micro_step."""
        if skip_nonfinite:
            raise NotImplementedError("trainer.skip_nonfinite is not supported with backend.name=deepspeed")
        if self.micro_steps == 0:
            raise RuntimeError("step() called before any micro_step(); call micro_step() after each backward")
        micro_steps, self.micro_steps = self.micro_steps, 0
        if self.accumulate:
            if not self.window_end:
                raise RuntimeError("backend.backward(loss, sync=True) must mark the window's last micro-batch")
            if self.client is not None:
                self.client.close_window = True
            self.engine.step()
            if self.client is not None:
                return self.client.metrics
            norm = self.engine.get_global_grad_norm()
            norm = torch.as_tensor(norm if norm is not None else float("nan"), dtype=torch.float32)
            return {"grad_norm": norm, "clip_coef": clip_coefficient(norm, self.max_grad_norm)}
        if not self.client.close_window:
            raise RuntimeError(f"the window was not closed: step() after {micro_steps} micro_step() calls, "
                               f"not optim.inner_steps={self.inner_steps}")
        self.client.close_window = False
        return self.client.metrics

    def zero_grad(self) -> None:
        """engine.step() already cleared the gradients."""

    def discard(self) -> None:
        raise NotImplementedError("trainer.skip_nonfinite is not supported with backend.name=deepspeed")

    def state_dict(self) -> Dict[str, Any]:
        """This rank's optimizer state (the backend saves it inside DeepSpeed's checkpoint)."""
        if self.micro_steps:
            raise RuntimeError("DeepSpeed checkpoints are taken between windows, not mid-window")
        return self.client.state_dict() if self.client is not None else self.outer.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        (self.client if self.client is not None else self.outer).load_state_dict(state)


class DeepSpeedBackend:
    """Backend that runs the model in a DeepSpeed ZeRO engine (stage from backend.zero_stage)."""
    name = "deepspeed"

    def __init__(self, cfg: BackendConfig, compile: bool = False, activation_checkpointing: bool = False,
                 micro_batch: int = 1, config_overrides: Optional[Dict[str, Any]] = None):
        if cfg.zero_stage not in (1, 2, 3):
            raise ValueError(f"backend.zero_stage={cfg.zero_stage} is not one of 1, 2, 3")
        if not dist.is_initialized():
            export_launcher_env()  # torchrun / deepspeed launcher / Slurm -> RANK, WORLD_SIZE, LOCAL_RANK, ...
        self.cfg = cfg
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = resolve_device(cfg.device, local_rank)
        if self.device.type == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before DeepSpeed picks its accelerator
        self.ds = import_deepspeed()
        backend = process_group_backend(cfg.dist_backend, self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.device.type == "cpu":
            _skip_cpu_shm_op()
        if not dist.is_initialized():
            self.ds.init_distributed(dist_backend=backend, timeout=timedelta(minutes=cfg.timeout_minutes),
                                     verbose=False)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.bf16 = autocast_dtype(cfg.precision, self.device) is not None
        self.compile = compile
        self.activation_checkpointing = activation_checkpointing
        self.micro_batch = micro_batch
        self.config_overrides = config_overrides or {}
        self.engine: Any = None
        self.step_optimizer: Optional[DeepSpeedStep] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def config(self, optim_cfg: "OptimConfig") -> Dict[str, Any]:
        """The engine's JSON config for this backend and optimizer."""
        return ds_config(self.cfg, optim_cfg, self.micro_batch, self.bf16,
                         pin_memory=self.device.type == "cuda", overrides=self.config_overrides)

    def setup(self, model: torch.nn.Module, optim_cfg: "OptimConfig", seed: int) -> Tuple[torch.nn.Module, "StepOptimizer"]:
        """Build the client optimizer and the engine; returns the engine (call it like the model)."""
        check_supported(optim_cfg)
        model = model.to(self.device)
        model.activation_checkpointing = self.activation_checkpointing
        if self.compile:
            if self.cfg.zero_stage == 3:
                raise ValueError("trainer.compile with backend.zero_stage=3 is not supported (ZeRO-3 hooks every "
                                 "module); use zero_stage 1/2 or compile=false")
            compile_regions(model)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters")
        groups = weight_decay_groups(named, optim_cfg.weight_decay)
        fused = optim_cfg.fused if optim_cfg.fused is not None else (self.device.type == "cuda" and not self.cfg.cpu_offload)
        hyper = dict(lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), eps=optim_cfg.eps)
        wrapped = optimizer_traits(optim_cfg).pseudo_gradient  # the outer AdamW steps on Nexus's pseudo-gradient
        if wrapped:
            client: torch.optim.Optimizer = NexusClient(groups, dict(hyper, weight_decay=optim_cfg.weight_decay))
        else:
            client = torch.optim.AdamW(groups, fused=fused, **hyper)
        engine, zero_opt, _, _ = self.ds.initialize(model=model, optimizer=client, config=self.config(optim_cfg),
                                                   dist_init_required=False)
        nexus_client = None
        if wrapped:
            nexus_client = client
            stage = self.cfg.zero_stage
            parts = fp32_partitions(zero_opt, stage, len(groups))
            outer = torch.optim.AdamW([{"params": [p], "weight_decay": g["weight_decay"]} for p, g in zip(parts, groups)],
                                      fused=fused and parts[0].is_cuda, **hyper)
            nexus = build_nexus(optim_cfg, outer, seed=seed,
                                norm_fn=partial(dp_norm, group=zero_opt.dp_process_group, device=self.device))

            def republish(indices: List[int]) -> None:
                for i in indices:
                    republish_partition(zero_opt, stage, i)

            client.attach(nexus, parts, republish)
        self.engine = engine
        self.step_optimizer = DeepSpeedStep(engine, optim_cfg, client, nexus_client)
        return engine, self.step_optimizer

    def autocast(self) -> AbstractContextManager:
        """Nothing: with bf16 DeepSpeed runs the module in bf16 itself (fp32 master partitions)."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, sync: bool) -> None:
        self.step_optimizer.window_end = sync
        self.engine.set_gradient_accumulation_boundary(sync)
        self.engine.backward(loss, scale_wrt_gas=False)

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        return mean_over_ranks(value)

    def save(self, directory: Path, model: torch.nn.Module, optimizer: "StepOptimizer") -> None:
        """DeepSpeed's checkpoint (module, fp32 partitions, client optimizer state per rank) under tag 'engine'."""
        if getattr(optimizer, "micro_steps", 0):
            raise RuntimeError("DeepSpeed checkpoints are taken between windows, not mid-window")
        self.engine.save_checkpoint(str(directory), tag=CHECKPOINT_TAG,
                                    client_state={"nexus_pretrain_backend": self.name})

    def load(self, directory: Path, model: torch.nn.Module, optimizer: "StepOptimizer") -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag=CHECKPOINT_TAG, load_optimizer_states=True,
                                              load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint (tag {CHECKPOINT_TAG!r}) in {directory}")

    def full_state_dict(self, model: torch.nn.Module) -> Dict[str, torch.Tensor]:
        """The fp32 master weights gathered into one CPU state dict on rank 0 (collective)."""
        module = getattr(model, "module", model)
        out: Dict[str, torch.Tensor] = {}
        for name, value in module.state_dict(keep_vars=True).items():
            full = None
            if isinstance(value, torch.nn.Parameter) and value.requires_grad:
                full = self.ds.utils.safe_get_full_fp32_param(value)
                if full is not None:
                    full = full.reshape(getattr(value, "ds_shape", value.shape))
            if full is None:
                full = value
            if self.is_main:
                out[name] = full.detach().to("cpu", copy=True)
        return out

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def load_fp32_weights(checkpoint: str | Path) -> Dict[str, torch.Tensor]:
    """The full fp32 model weights of a checkpoint this backend wrote, in one process on CPU (any ZeRO
    stage and world size), through DeepSpeed's own zero_to_fp32 consolidation."""
    import_deepspeed()
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint  # optional: gpu extra

    state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=CHECKPOINT_TAG)
    return {name: tensor.float() for name, tensor in state.items()}
