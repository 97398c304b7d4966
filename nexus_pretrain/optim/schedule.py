"""Learning-rate multipliers: warmup-stable-decay (WSD), cosine and constant, as pure functions of step.

Being pure functions of (config, step), schedules need no state of their own: resuming a run at
step s gives the same learning rate as the uninterrupted run.

Steps are 0-based and the run's updates are steps 0 .. max_steps - 1. Decays reach their floor
(``min_lr_ratio``) at step max_steps, one past the last update, so no update is spent at the floor:
with the default floor 0 the last update still moves the weights.
"""

from __future__ import annotations

import math
from typing import Any

SCHEDULES = ("wsd", "cosine", "constant")
"""schedule.name: warmup-stable-decay, warmup then cosine decay, warmup then constant."""
DECAY_SHAPES = ("linear", "cosine", "sqrt")
"""schedule.decay_shape: the shape of WSD's final decay."""


def resolve_steps(value: float, max_steps: int, key: str = "steps") -> int:
    """A phase length in steps: ``value`` < 1 is a fraction of max_steps (rounded half up to whole steps),
    ``value`` >= 1 a whole number of steps; ValueError names ``key`` otherwise."""
    if value < 0:
        raise ValueError(f"{key}={value} must be >= 0; give a fraction < 1 of trainer.max_steps or whole steps")
    if value < 1:
        return math.floor(value * max_steps + 0.5)
    if value != int(value):
        raise ValueError(f"{key}={value} is neither a fraction < 1 of trainer.max_steps nor a whole number of "
                         f"steps; use e.g. {key}={int(value)} or {key}={value / max_steps:.3g}")
    return int(value)


def phase_steps(schedule_cfg: Any, max_steps: int) -> tuple[int, int]:
    """(warmup, decay) in steps for a run of max_steps, fractions resolved (decay is 0 unless wsd)."""
    s = schedule_cfg
    warmup = resolve_steps(s.warmup_steps, max_steps, "schedule.warmup_steps")
    decay = resolve_steps(s.decay_steps, max_steps, "schedule.decay_steps") if s.name == "wsd" else 0
    return warmup, decay


def _warmup(step: int, warmup_steps: int) -> float:
    return (step + 1) / warmup_steps


def wsd(step: int, max_steps: int, warmup_steps: int, decay_steps: int, decay_shape: str = "linear",
        min_lr_ratio: float = 0.0) -> float:
    """Linear warmup over warmup_steps, 1.0 until the last decay_steps, then decay towards min_lr_ratio.

    The decay covers the last decay_steps updates, each strictly between 1.0 and min_lr_ratio; the
    floor itself falls at step max_steps, after the last update.
    """
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    decay_start = max_steps - decay_steps
    if step < decay_start or decay_steps == 0:
        return 1.0
    progress = (step - decay_start + 1) / (decay_steps + 1)  # 1/(d+1) .. d/(d+1); 1 at step max_steps
    if decay_shape == "linear":
        remaining = 1.0 - progress
    elif decay_shape == "cosine":
        remaining = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif decay_shape == "sqrt":
        remaining = 1.0 - math.sqrt(progress)
    else:
        raise ValueError(f"schedule.decay_shape={decay_shape!r} is not one of {', '.join(DECAY_SHAPES)}")
    return min_lr_ratio + (1.0 - min_lr_ratio) * remaining


def cosine(step: int, max_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Linear warmup, then a half cosine from 1.0 to min_lr_ratio at step max_steps (after the last update)."""
    if step < warmup_steps:
        return _warmup(step, warmup_steps)
    progress = (step - warmup_steps + 1) / (max_steps - warmup_steps + 1)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def constant(step: int, warmup_steps: int) -> float:
    """Linear warmup, then 1.0."""
    return _warmup(step, warmup_steps) if step < warmup_steps else 1.0


def lr_multiplier(schedule_cfg: Any, step: int, max_steps: int) -> float:
    """The multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    s = schedule_cfg
    warmup, decay = phase_steps(s, max_steps)
    if s.name == "wsd":
        return wsd(step, max_steps, warmup, decay, s.decay_shape, s.min_lr_ratio)
    if s.name == "cosine":
        return cosine(step, max_steps, warmup, s.min_lr_ratio)
    if s.name == "constant":
        return constant(step, warmup)
    raise ValueError(f"schedule.name={s.name!r} is not one of {', '.join(SCHEDULES)}")
