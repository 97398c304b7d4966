"""What the distributed backends share: the rank/world-size environment (torchrun, deepspeed or Slurm),
the process-group backend to join with, and the mean of a tensor over ranks."""

from __future__ import annotations

import os
import subprocess

import torch
import torch.distributed as dist

TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _first_slurm_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return nodelist.split(",")[0].split("[")[0]  # "node[1-4]" without scontrol: best effort


def export_launcher_env() -> None:
    """Make sure RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT are set.

    torchrun and the deepspeed launcher set them. A Slurm task (the submitit launcher starts one per
    GPU) has SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID instead: translate those, with the job's first
    node as the rendezvous host and a port derived from the job id. Raises RuntimeError when neither
    is present.
    """
    if all(k in os.environ for k in TORCHRUN_KEYS):
        return
    if "SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ:
        os.environ.setdefault("RANK", os.environ["SLURM_PROCID"])
        os.environ.setdefault("WORLD_SIZE", os.environ["SLURM_NTASKS"])
        os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
        os.environ.setdefault("MASTER_ADDR", _first_slurm_host(os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")))
        os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))
        return
    missing = ", ".join(k for k in TORCHRUN_KEYS if k not in os.environ)
    raise RuntimeError(f"a distributed backend needs a launcher: {missing} not set; start with torchrun "
                       "(scripts/launch.sh), the deepspeed launcher or Slurm, or use backend.name=single")


def process_group_backend(name: str, device: torch.device) -> str:
    """backend.dist_backend resolved: auto is nccl on GPU and gloo on CPU."""
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return name


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """A new tensor: the mean of ``value`` over all ranks (SUM then divide: gloo has no AVG)."""
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()
