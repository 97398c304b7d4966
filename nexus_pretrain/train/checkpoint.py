"""Atomic, rotating checkpoints of the whole run state, on any backend, for exact resume.

A checkpoint is a directory ``run_dir/checkpoints/step_XXXXXXXX`` holding the backend's model and
optimizer state (DCP shards for single/fsdp2, DeepSpeed's files for deepspeed), every rank's RNG
state (``rng/rank_N.pt``) and ``meta.json`` (step, world size, backend, per-domain tokens consumed,
the run config). The data position needs no state: batches are a pure function of (seed, step).

Every rank writes into ``.tmp_step_XXXXXXXX``; once all are done, rank 0 writes meta.json and renames
the folder into place, so a crash at any moment leaves the previous checkpoints intact and never a
half-written one under a final name. An asynchronous save (backend.async_checkpoint) is renamed when
its background write completes: at the next save or at ``wait()``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np
import torch

if TYPE_CHECKING:
    from nexus_pretrain.optim.base import StepOptimizer
    from nexus_pretrain.train.backends.base import Backend

META_FILE = "meta.json"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


def checkpoint_root(run_dir: str | Path) -> Path:
    """Folder holding a run's checkpoints."""
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> List[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _STEP_DIR.match(p.name) and (p / META_FILE).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_meta(checkpoint: str | Path) -> Dict[str, Any]:
    """A checkpoint's meta.json (step, world_size, backend, domain_tokens, config)."""
    path = Path(checkpoint) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {checkpoint} is not a complete checkpoint directory")
    return json.loads(path.read_text())


def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what rng_state returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_json_durably(path: Path, value: Dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class _Pending:
    step: int
    tmp: Path
    meta: Dict[str, Any]
    future: Optional[Future]


class Checkpointer:
    """Saves and loads run checkpoints through a backend; every method is collective."""

    def __init__(self, run_dir: str | Path, backend: "Backend", keep_last: int):
        self.root = checkpoint_root(run_dir)
        self.backend = backend
        self.keep_last = keep_last
        self._pending: Optional[_Pending] = None

    def save(self, step: int, model: torch.nn.Module, optimizer: "StepOptimizer", meta: Dict[str, Any]) -> Path:
        """Checkpoint ``step`` (meta: JSON-able run state beyond model/optimizer/RNG); returns its final path."""
        self.wait()
        tmp = self.root / f".tmp_step_{step:08d}"
        if self.backend.is_main:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a crash mid-save
            tmp.mkdir(parents=True)
        self.backend.barrier()
        future = self.backend.save(tmp, model, optimizer)
        (tmp / "rng").mkdir(exist_ok=True)
        torch.save(rng_state(), tmp / "rng" / f"rank_{self.backend.rank}.pt")
        meta = {**meta, "step": step, "world_size": self.backend.world_size, "backend": self.backend.name}
        self._pending = _Pending(step, tmp, meta, future)
        if future is None:
            self.wait()
        return self.root / f"step_{step:08d}"

    def wait(self) -> None:
        """Complete a pending save: wait for its writes, then rename it into place and rotate."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.future is not None:
            pending.future.result()
        self.backend.barrier()
        if self.backend.is_main:
            _write_json_durably(pending.tmp / META_FILE, pending.meta)
            final = self.root / f"step_{pending.step:08d}"
            if final.exists():
                shutil.rmtree(final)
            os.replace(pending.tmp, final)
            for old in list_checkpoints(self.root.parent)[:-self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        self.backend.barrier()

    def latest(self) -> Optional[Path]:
        """The newest complete checkpoint of this run, or None."""
        return latest_checkpoint(self.root.parent)

    def load(self, checkpoint: Path, model: torch.nn.Module, optimizer: "StepOptimizer") -> Dict[str, Any]:
        """Restore model, optimizer and this rank's RNG from a checkpoint; returns its meta.

        A rank the saving run did not have (the world size grew) keeps its RNG: nothing in training
        draws from it, the data order being a function of the step.
        """
        meta = read_meta(checkpoint)
        if meta["backend"] != self.backend.name and "deepspeed" in (meta["backend"], self.backend.name):
            raise ValueError(f"{checkpoint} was written by backend.name={meta['backend']}; DeepSpeed checkpoints "
                             "and DCP ones (single, fsdp2) do not load into each other")
        self.backend.load(checkpoint, model, optimizer)
        rng_file = checkpoint / "rng" / f"rank_{self.backend.rank}.pt"
        if rng_file.is_file():
            set_rng_state(torch.load(rng_file, weights_only=False))
        return meta
