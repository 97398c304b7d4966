"""WSD cooldown branches: fully decayed endpoints along one run.

With ``trainer.cooldown_from=[...]`` (steps, or fractions < 1 of trainer.max_steps) the run keeps its
stable-phase checkpoint at each point, and after the run a branch resumes from each one and runs the decay
phase (schedule.decay_steps long, same shape and floor) to its end, in ``RUN_DIR/cooldown/step_XXXXXXXX/``
with ``branch.json`` naming its parent. Every branch ends fully decayed, so (pretraining loss, downstream
loss) pairs along a run are comparable, which ``nexus-analyze isoloss`` uses to compare optimizers at the
same pretraining loss. Batches are a function of (seed, step), so a branch trains on exactly the data the
main run saw after the branch point.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, List

from nexus_pretrain.config import TrainConfig
from nexus_pretrain.optim.schedule import phase_steps, resolve_steps
from nexus_pretrain.train import checkpoint as ckpt

BRANCH_DIR = "cooldown"
BRANCH_FILE = "branch.json"
BRANCH_CHANGES = ["trainer.max_steps", "schedule.warmup_steps", "schedule.decay_steps", "trainer.cooldown_from"]
"""What a branch changes against its parent's checkpoint (the learning rate of every step taken stays)."""


def cooldown_steps(cfg: TrainConfig) -> List[int]:
    """The branch points of trainer.cooldown_from as steps, sorted."""
    t = cfg.trainer
    return sorted({resolve_steps(v, t.max_steps, "trainer.cooldown_from") for v in t.cooldown_from})


def branch_dir(run_dir: str | Path, step: int) -> Path:
    """Where the branch from ``step`` of the run in ``run_dir`` lives."""
    return Path(run_dir) / BRANCH_DIR / f"step_{step:08d}"


def branch_config(cfg: TrainConfig, step: int) -> TrainConfig:
    """The config of the branch from ``step``: the parent's, decaying over the last decay_steps of a run that
    ends at step + decay_steps, resumed from the parent's checkpoint at ``step``."""
    warmup, decay = phase_steps(cfg.schedule, cfg.trainer.max_steps)
    branch = copy.deepcopy(cfg)
    t = branch.trainer
    branch.schedule.warmup_steps, branch.schedule.decay_steps = warmup, decay
    t.max_steps = step + decay
    t.run_dir = str(branch_dir(cfg.trainer.run_dir, step))
    t.resume = str(ckpt.checkpoint_root(cfg.trainer.run_dir) / f"step_{step:08d}")
    t.cooldown_from = []
    t.allow_config_change = sorted({*t.allow_config_change, *BRANCH_CHANGES})
    return branch


def run_branches(cfg: TrainConfig, make_trainer: Callable[[TrainConfig], Any], is_main: bool = True) -> List[Path]:
    """Run every cooldown branch of the finished run ``cfg`` (each on every rank, one after another) and
    return their directories; a branch already complete is skipped, an interrupted one resumes."""
    done = []
    for step in cooldown_steps(cfg):
        branch = branch_config(cfg, step)
        out = Path(branch.trainer.run_dir)
        if is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / BRANCH_FILE).write_text(json.dumps(
                {"parent": str(Path(cfg.trainer.run_dir)), "from_step": step, "max_steps": branch.trainer.max_steps},
                indent=1) + "\n")
        latest = ckpt.latest_valid_checkpoint(out)
        if latest is not None and ckpt.checkpoint_step(latest) == branch.trainer.max_steps:
            done.append(out)
            continue
        if latest is not None:  # an interrupted branch continues from its own newest checkpoint
            branch.trainer.resume = "auto"
        trainer = make_trainer(branch)
        try:
            trainer.fit()
        finally:
            trainer.close()
        done.append(out)
    return done
