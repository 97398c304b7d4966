"""Whether a resumed run's new trainer.max_steps or schedule phases rewrite the learning rate of the steps it
has already taken (then the run would no longer be what it was), and how to make it longer without that."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Dict, Optional

from nexus_pretrain.optim.schedule import lr_multiplier, resolve_steps

PHASE_KEYS = ("schedule.warmup_steps", "schedule.decay_steps")
"""Schedule phases given as a fraction of trainer.max_steps or in steps: rewriting one in the other form
with the same number of steps (0.1 of 1000 as 100) changes nothing, and is how a run is made longer
without moving a phase it has already passed."""


def _schedule(leaves: Dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(**{k[len("schedule."):]: v for k, v in leaves.items() if k.startswith("schedule.")})


def phase_steps(leaves: Dict[str, Any], key: str) -> Optional[int]:
    """The steps a phase key of a config's leaves comes to (None where its value cannot be resolved)."""
    try:
        return resolve_steps(leaves[key], leaves["trainer.max_steps"], key)
    except (TypeError, ValueError):
        return None


def same_phase(key: str, old: Dict[str, Any], new: Dict[str, Any]) -> bool:
    """Whether ``key`` is a phase length that comes to the same steps in both configs (each under its
    own trainer.max_steps)."""
    steps = phase_steps(old, key) if key in PHASE_KEYS else None
    return steps is not None and steps == phase_steps(new, key)


def schedule_change(old: Dict[str, Any], new: Dict[str, Any], steps_taken: int) -> Optional[str]:
    """Where the learning-rate multiplier of the first ``steps_taken`` steps differs between two configs,
    else None."""
    old_schedule, new_schedule = _schedule(old), _schedule(new)
    try:
        for step in range(steps_taken):
            a = lr_multiplier(old_schedule, step, old["trainer.max_steps"])
            b = lr_multiplier(new_schedule, step, new["trainer.max_steps"])
            if not math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15):
                return f"the learning rate of step {step + 1}, already taken, would be x{b:.4g} instead of x{a:.4g}"
    except ValueError:  # a schedule the new max_steps cannot hold; validate() reports it
        return None
    return None


def longer_run_note(old: Dict[str, Any], new: Dict[str, Any], steps_taken: int) -> str:
    """Why a new trainer.max_steps rewrites the steps already taken, and, where giving phases that are
    fractions in steps (as many as the run has had) keeps those steps as they were, which to give."""
    note = f" ({schedule_change(old, new, steps_taken)})"
    fractions = [key for key in PHASE_KEYS if 0 < new[key] < 1 and phase_steps(old, key) is not None]
    for pinned in (fractions[:1], fractions):  # the warmup alone first: a decay may well grow with the run
        steps = {key: phase_steps(old, key) for key in pinned}
        if steps and schedule_change(old, {**new, **steps}, steps_taken) is None:
            given = " ".join(f"{key}={value}" for key, value in steps.items())
            return f"{note} (giving {given} keeps the steps taken as they were)"
    return note
