"""Atomic, rotating, sealed checkpoints of the whole run state, on any backend, for exact resume.

A checkpoint is a directory ``run_dir/checkpoints/step_XXXXXXXX`` holding the backend's model and
optimizer state (DCP shards for single/fsdp2, DeepSpeed's files for deepspeed), every rank's RNG
state (``rng/rank_N.pt``), ``meta.json`` (step, world size, backend, per-domain tokens consumed,
the run config) and ``manifest.json`` (size and CRC-32 of every other file, see manifest.py).
The data position needs no state: batches are a pure function of (seed, step).

Every rank writes into ``.tmp_step_XXXXXXXX``; once all are done, rank 0 writes meta.json, then the
manifest, and renames the folder into place, so a crash at any moment leaves the previous checkpoints
intact and never a half-written one under a final name. An asynchronous save (backend.async_checkpoint)
is renamed when its background write completes: at the next save or at ``wait()``.

Before a checkpoint is loaded (resume, export, trainer.init_from) it is verified against its manifest:
:func:`checkpoint_problem` says what is wrong with a damaged one, :func:`latest_valid_checkpoint` falls
back to the newest intact one. Checkpoints written before manifests existed carry none; they are
accepted with a warning (meta.json must still parse), since nothing can tell their damage apart.
RNG files hold tensors and plain numbers only and load with ``weights_only=True``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Set

import numpy as np
import torch

from nexus_pretrain.errors import RunError, os_error_cause, write_failed
from nexus_pretrain.train import manifest

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from nexus_pretrain.optim.base import StepOptimizer
    from nexus_pretrain.train.backends.base import Backend

META_FILE = "meta.json"
SUPERSEDED_DIR = "superseded"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


class CheckpointError(RunError):
    """A checkpoint is damaged or unusable; the message names its path and what is wrong."""


def warn(message: str) -> None:
    """Log a one-line warning."""
    log.warning(f"warning: {message}")


def checkpoint_root(run_dir: str | Path) -> Path:
    """Folder holding a run's checkpoints."""
    return Path(run_dir) / "checkpoints"


def checkpoint_step(path: str | Path) -> Optional[int]:
    """The step of a checkpoint directory named step_XXXXXXXX, else None."""
    match = _STEP_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def step_dirs(run_dir: str | Path) -> List[Path]:
    """Every checkpoint directory of a run under its final name (complete or damaged), oldest first."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)), key=checkpoint_step)


def list_checkpoints(run_dir: str | Path) -> List[Path]:
    """Complete checkpoints of a run (with meta.json; see checkpoint_problem for verification), oldest first."""
    return [p for p in step_dirs(run_dir) if (p / META_FILE).is_file()]


def latest_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The newest complete checkpoint, or None (not verified: see latest_valid_checkpoint)."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _load_meta(checkpoint: Path) -> tuple:
    """(meta, None) or (None, what is wrong with meta.json)."""
    path = checkpoint / META_FILE
    if not path.is_file():
        return None, f"{META_FILE} is missing"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return None, f"{META_FILE} is unreadable ({type(error).__name__}: {error})"
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        return None, f"{META_FILE} has no step"
    return meta, None


def read_meta(checkpoint: str | Path) -> Dict[str, Any]:
    """A checkpoint's meta.json (step, world_size, backend, domain_tokens, config)."""
    meta, problem = _load_meta(Path(checkpoint))
    if problem:
        raise CheckpointError(f"{checkpoint} is not a complete checkpoint directory: {problem}")
    return meta


def checkpoint_problem(checkpoint: str | Path) -> Optional[str]:
    """What is wrong with a checkpoint directory (missing, unreadable meta.json, a file that does not
    match its manifest), or None when it is intact. A checkpoint without manifest passes if its
    meta.json reads (see is_sealed)."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        return "no such checkpoint directory"
    if manifest.has_manifest(checkpoint):
        problem = manifest.manifest_problem(checkpoint)
        if problem:
            return problem
    return _load_meta(checkpoint)[1]


def is_sealed(checkpoint: str | Path) -> bool:
    """Whether a checkpoint has a manifest (all written since manifests exist do)."""
    return manifest.has_manifest(Path(checkpoint))


def verify_checkpoint(checkpoint: str | Path) -> Path:
    """``checkpoint`` if it is intact; else CheckpointError naming it and the damage. An unsealed (older)
    checkpoint passes with a warning."""
    checkpoint = Path(checkpoint)
    problem = checkpoint_problem(checkpoint)
    if problem:
        raise CheckpointError(f"checkpoint {checkpoint} is damaged: {problem}; use another checkpoint of the run "
                              f"(under {checkpoint.parent})")
    if not is_sealed(checkpoint):
        warn(f"{checkpoint} has no {manifest.MANIFEST_FILE} (written before checkpoints were sealed); "
             "loading it unverified")
    return checkpoint


def latest_valid_checkpoint(run_dir: str | Path) -> Optional[Path]:
    """The newest intact checkpoint of a run, or None when it has none at all. Each newer damaged one is
    skipped with a warning saying what is wrong; CheckpointError when every one is damaged."""
    found = step_dirs(run_dir)
    skipped = []
    for checkpoint in reversed(found):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            if skipped:
                warn(f"resuming from {checkpoint.name} instead of {'; '.join(skipped)}")
            return verify_checkpoint(checkpoint)
        skipped.append(f"{checkpoint.name} (damaged: {problem})")
    if found:
        raise CheckpointError(f"no intact checkpoint in {checkpoint_root(run_dir)}: {'; '.join(skipped)}; resume "
                              "from a copy with trainer.resume=PATH, or start over in a new trainer.run_dir")
    return None


def set_aside_newer(run_dir: str | Path, step: int) -> List[Path]:
    """Move a run's checkpoints newer than ``step`` (damaged ones, or a timeline abandoned by resuming an
    older checkpoint) into checkpoints/superseded/, where rotation and resume=auto never look; their new paths."""
    moved = []
    for checkpoint in step_dirs(run_dir):
        if checkpoint_step(checkpoint) > step:
            target = checkpoint.parent / SUPERSEDED_DIR / checkpoint.name
            n = 1
            while target.exists():
                target, n = checkpoint.parent / SUPERSEDED_DIR / f"{checkpoint.name}.{n}", n + 1
            target.parent.mkdir(exist_ok=True)
            os.replace(checkpoint, target)
            moved.append(target)
    return moved


def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, as tensors and plain numbers."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what rng_state returned (or the NumPy-array form older checkpoints stored)."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    if isinstance(keys, torch.Tensor):
        keys = keys.numpy()
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_array_globals() -> list:
    """The NumPy globals a pickled ndarray refers to, for loading older RNG files with weights_only=True."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)), reconstruct,
            (reconstruct, "numpy.core.multiarray._reconstruct")]


def load_rng_file(path: Path) -> Dict[str, Any]:
    """An RNG file written by save, read with weights_only=True."""
    with torch.serialization.safe_globals(_numpy_array_globals()):
        return torch.load(path, weights_only=True)


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

    def __init__(self, run_dir: str | Path, backend: "Backend", keep_last: int, keep_steps: Iterable[int] = ()):
        self.root = checkpoint_root(run_dir)
        self.backend = backend
        self.keep_last = keep_last
        self.keep_steps: Set[int] = set(keep_steps)
        """Steps whose checkpoints are always written and never rotated away (cooldown branch points); not
        counted in keep_last."""
        self._pending: Optional[_Pending] = None

    def save(self, step: int, model: torch.nn.Module, optimizer: "StepOptimizer", meta: Dict[str, Any]) -> Path:
        """Checkpoint ``step`` (meta: JSON-able run state beyond model/optimizer/RNG); returns its final path.
        A write the system refuses (full disk, quota, permissions) is a one-line RunError naming the path;
        the previous checkpoints stay intact."""
        self.wait()
        tmp = self.root / f".tmp_step_{step:08d}"
        try:
            if self.backend.is_main:
                shutil.rmtree(tmp, ignore_errors=True)  # left by a crash mid-save
                tmp.mkdir(parents=True)
            self.backend.barrier()
            future = self.backend.save(tmp, model, optimizer)
            (tmp / "rng").mkdir(exist_ok=True)
            torch.save(rng_state(), tmp / "rng" / f"rank_{self.backend.rank}.pt")
        except BaseException as error:  # DCP reports a rank's OSError as a CheckpointException (a BaseException)
            self._raise_write_failed(tmp, error)
        meta = {**meta, "step": step, "world_size": self.backend.world_size, "backend": self.backend.name}
        self._pending = _Pending(step, tmp, meta, future)
        if future is None:
            self.wait()
        return self.root / f"step_{step:08d}"

    def _raise_write_failed(self, tmp: Path, error: BaseException) -> None:
        """Re-raise a failed save: an operating-system error (full disk, quota, permissions) as a one-line
        RunError, the half-written folder removed; anything else as it is."""
        cause = os_error_cause(error)
        if cause is None:
            raise error
        if self.backend.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(self.root.parent)
        kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
        raise write_failed("checkpoint", tmp.parent / tmp.name[len(".tmp_"):], cause,
                           f"{kept}; free space (or fix the directory) and continue with trainer.resume=auto") from error

    def wait(self) -> None:
        """Complete a pending save: wait for its writes, seal it with its manifest, rename it into place and rotate."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            if pending.future is not None:
                pending.future.result()
            self.backend.barrier()
            if self.backend.is_main:
                _write_json_durably(pending.tmp / META_FILE, pending.meta)
                manifest.write_manifest(pending.tmp)  # last: its presence seals everything above
                final = self.root / f"step_{pending.step:08d}"
                if final.exists():
                    shutil.rmtree(final)
                os.replace(pending.tmp, final)
                manifest.fsync_dir(self.root)
        except BaseException as error:
            self._raise_write_failed(pending.tmp, error)
        if self.backend.is_main:
            rotating = [c for c in list_checkpoints(self.root.parent) if checkpoint_step(c) not in self.keep_steps]
            for old in rotating[:-self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        self.backend.barrier()

    def latest(self) -> Optional[Path]:
        """The newest complete checkpoint of this run, or None."""
        return latest_checkpoint(self.root.parent)

    def load(self, checkpoint: Path, model: torch.nn.Module, optimizer: "StepOptimizer") -> Dict[str, Any]:
        """Restore model, optimizer and this rank's RNG from a checkpoint (verify it first:
        verify_checkpoint); returns its meta.

        A rank the saving run did not have (the world size grew) keeps its RNG: nothing in training
        draws from it, the data order being a function of the step.
        """
        meta = read_meta(checkpoint)
        if meta["backend"] != self.backend.name and "deepspeed" in (meta["backend"], self.backend.name):
            raise CheckpointError(f"{checkpoint} was written by backend.name={meta['backend']}; DeepSpeed checkpoints "
                                  "and DCP ones (single, fsdp2) do not load into each other")
        self.backend.load(checkpoint, model, optimizer)
        rng_file = checkpoint / "rng" / f"rank_{self.backend.rank}.pt"
        if rng_file.is_file():
            set_rng_state(load_rng_file(rng_file))
        return meta
