"""Throughput accounting and metric sinks (JSONL, terminal progress bar, W&B, TensorBoard); rundir/metrics_file.py
reads and truncates the JSONL file."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch
from tqdm.auto import tqdm

from nexus_pretrain.errors import write_failed
from nexus_pretrain.extras import require
from nexus_pretrain.rundir.metrics_file import METRICS_FILE
from nexus_pretrain.rundir.run_name import run_identity

# Dense bf16 peak FLOP/s that MFU is quoted against (H100/H200 SXM datasheet: 989 TFLOP/s).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(device: torch.device) -> Optional[float]:
    """Datasheet bf16 peak of the GPU, or None where MFU is not meaningful (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def peak_memory_gib(device: torch.device) -> Optional[float]:
    """Peak allocated GPU memory since the last reset, in GiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


class Throughput:
    """Tokens/s (all ranks, and per GPU) and MFU over the steps since the last call to ``rates``."""
    def __init__(self, flops_per_token: float, device: torch.device, world_size: int = 1):
        self.flops_per_token, self.device, self.world_size = flops_per_token, device, world_size
        self.peak = peak_flops(device)
        self._t0, self._tokens = time.perf_counter(), 0

    def add(self, tokens: int) -> None:
        """Count tokens processed."""
        self._tokens += tokens

    @contextlib.contextmanager
    def paused(self):
        """Leave the time spent inside (evaluation, checkpoints) out of the rates."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._t0 += time.perf_counter() - start

    def rates(self) -> Dict[str, float]:
        """tokens_per_s, mfu (when the peak is known) and peak memory since the previous call."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        elapsed = max(now - self._t0, 1e-9)
        out = {"tokens_per_s": self._tokens / elapsed}
        if self.world_size > 1:
            out["tokens_per_s_per_device"] = out["tokens_per_s"] / self.world_size
        if self.peak:
            out["mfu"] = out["tokens_per_s"] * self.flops_per_token / (self.peak * self.world_size)
        mem = peak_memory_gib(self.device)
        if mem is not None:
            out["peak_mem_gib"] = mem
        self._t0, self._tokens = now, 0
        return out


def init_wandb(cfg: Any, run_dir: Path, run_config: Mapping[str, Any]) -> Any:
    """A W&B run (logging.wandb_project and wandb_mode) named and grouped by run_identity, with the run's
    config and its command-line overrides."""
    wandb = require("wandb", "logging.wandb=true needs")
    identity = run_identity(run_config, run_dir)
    return wandb.init(project=cfg.wandb_project, mode=cfg.wandb_mode, dir=str(run_dir), resume="allow",
                      name=identity["name"], group=identity["group"], tags=identity["tags"],
                      config={**run_config, "overrides": identity["overrides"]})


class MetricsLogger:
    """Fans metric dictionaries out to the enabled sinks; only the main rank writes."""
    def __init__(self, cfg: Any, run_dir: Path, total_steps: int, enabled: bool = True,
                 run_config: Optional[Dict[str, Any]] = None, start_step: int = 0):
        self.enabled = enabled
        self._jsonl = self._bar = self._wandb = self._tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.jsonl:
            # Unbuffered: each record is one write, and closing never flushes a half-written one.
            self._jsonl_path = run_dir / METRICS_FILE
            self._jsonl = open(self._jsonl_path, "ab", buffering=0)
        if cfg.progress_bar:
            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)
        if cfg.wandb and cfg.wandb_mode != "disabled":
            self._wandb = init_wandb(cfg, run_dir, run_config or {})
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # optional: tracking extra
            self._tb = SummaryWriter(str(run_dir / "tb"))

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        """Record metrics for a step in every sink."""
        if not self.enabled:
            return
        record = {"step": step, **metrics}
        if self._jsonl:
            self._write_jsonl((json.dumps(record) + "\n").encode())
        if self._wandb:
            self._wandb.log(metrics, step=step)
        if self._tb:
            for key, value in metrics.items():
                self._tb.add_scalar(key, value, step)
        if self._bar is not None and "loss" in metrics:
            self._bar.set_postfix({k: f"{metrics[k]:.4g}" for k in ("loss", "lr", "tokens_per_s") if k in metrics})

    def _write_jsonl(self, data: bytes) -> None:
        try:
            while data:
                data = data[self._jsonl.write(data):]
        except OSError as error:
            raise write_failed("metrics to", self._jsonl_path, error, "free space (or fix the directory) and "
                               "continue from the last checkpoint with trainer.resume=auto") from error

    def advance(self, steps: int = 1) -> None:
        """Move the progress bar."""
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        """Flush and close every sink."""
        for sink in (self._bar, self._tb):
            if sink is not None:
                sink.close()
        if self._jsonl:
            self._jsonl.close()
        if self._wandb:
            self._wandb.finish()

