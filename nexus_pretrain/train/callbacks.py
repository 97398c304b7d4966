"""What happens between training steps: metrics, preemption, measurements and checkpoints as callbacks.

The trainer's loop shows the algorithm only::

    for each step:
        metrics = trainer.train_step()
        for callback in callbacks:
            callback.after_step(trainer, loop, metrics)

A new measurement is a new callback (OLMo-core's pattern, kept to one hook). Callbacks run in list order;
work that is not training (evaluations, checkpoints, gradient cosines) runs with the throughput clock paused,
so tokens/s and MFU count training only.
"""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List

import torch

from nexus_pretrain.data.epochs import METRIC as EPOCHS
from nexus_pretrain.data.epochs import epochs

if TYPE_CHECKING:
    from nexus_pretrain.train.metrics import MetricsLogger, Throughput
    from nexus_pretrain.train.trainer import Trainer

WINDOW_MEANS = ("loss", "inner_loss")
"""Step metrics logged as their mean over the steps since the previous log line."""


@dataclass
class LoopState:
    """What one fit() shares with its callbacks."""

    logger: "MetricsLogger"
    speed: "Throughput"
    stop: int
    """The step this fit() ends at (trainer.max_steps, or earlier when asked)."""
    step: int = 0
    """The trainer's step after the step just taken."""
    last: Dict[str, float] = field(default_factory=dict)
    """The latest logged value of every metric: fit()'s return value."""
    stop_requested: bool = False
    """Set by a callback to end the loop after this step (preemption)."""
    paused_work: bool = False
    """Set when a callback did non-training work this step (the loop then releases garbage once)."""

    @property
    def at_end(self) -> bool:
        """Whether the step just taken is this fit()'s last."""
        return self.step >= self.stop

    def log(self, values: Dict[str, float]) -> None:
        """Log values at the current step and remember them."""
        self.logger.log(self.step, values)
        self.last.update(values)


class Callback:
    """A hook after every step of the loop."""

    def after_step(self, trainer: "Trainer", loop: LoopState, metrics: Dict[str, torch.Tensor]) -> None:
        """After every step, with its device-side metrics (callbacks earlier in the list may have consumed some)."""


def every(step: int, interval: int) -> bool:
    """Whether a periodic action with this interval (0: never) is due at this step."""
    return bool(interval) and step % interval == 0


def at_log_step(trainer: "Trainer", loop: LoopState) -> bool:
    """Whether the step just taken gets a metrics line: every trainer.log_every steps and at the end."""
    return every(loop.step, trainer.cfg.trainer.log_every) or loop.at_end


class MetricsCallback(Callback):
    """Every trainer.log_every steps (and at the end): the window's mean losses, the last step's other
    metrics, per-domain training losses and tokens, throughput; refuses non-finite values first."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.steps = 0

    def after_step(self, trainer, loop, metrics):
        if "loss" in metrics:  # losses are averaged over the log window, other metrics are the step's
            for key in WINDOW_MEANS:
                self.sums[key] = metrics.pop(key) + self.sums.get(key, 0.0)
            self.steps += 1
        if not at_log_step(trainer, loop):
            return
        trainer.check_finite()
        record = {k: float(v) for k, v in metrics.items()}
        record.update({key: float(total) / self.steps for key, total in self.sums.items()})
        record.update(trainer.domain_training_losses())
        record.update(loop.speed.rates())
        record["tokens"] = float(loop.step * trainer.cfg.trainer.global_batch * trainer.cfg.data.seq_len)
        tokens = trainer.domain_tokens()
        record.update({f"tokens/{d}": float(n) for d, n in tokens.items()})
        record.update({f"{EPOCHS}{d}": e for d, e in epochs(tokens, trainer.data.sampler.train_tokens).items()})
        if trainer.skipped_steps:
            record["skipped_steps"] = float(trainer.skipped_steps)
        loop.log(record)
        self.sums, self.steps = {}, 0


class PreemptionCallback(Callback):
    """At log steps: when any rank received SIGTERM/SIGUSR1, checkpoint and end the loop."""

    def after_step(self, trainer, loop, metrics):
        if not at_log_step(trainer, loop) or not trainer.signalled():
            return
        with loop.speed.paused():
            trainer.save()
        loop.last["preempted"] = 1.0
        loop.stop_requested = True


class Measurement(Callback, ABC):
    """A measurement logged when ``due``; it runs with the throughput clock paused."""

    @abstractmethod
    def due(self, trainer: "Trainer", loop: LoopState) -> bool:
        """Whether to measure after the step just taken."""

    @abstractmethod
    def measure(self, trainer: "Trainer") -> Dict[str, float]:
        """The values to log."""

    def after_step(self, trainer, loop, metrics):
        if loop.stop_requested or not self.due(trainer, loop):
            return
        trainer.check_finite()
        with loop.speed.paused():
            loop.log(self.measure(trainer))
        loop.paused_work = True


class GradientCosineCallback(Measurement):
    """Mean pairwise cosine of per-domain gradients every logging.cosine_every steps (paper Sec. 5.1)."""

    def due(self, trainer, loop):
        return every(loop.step, trainer.cfg.logging.cosine_every)

    def measure(self, trainer):
        return trainer.domain_cosine()


class EvaluationCallback(Measurement):
    """Validation, pretrain and OOD losses (and in-loop downstream losses) every trainer.eval_every steps
    and at the run's last step."""

    def due(self, trainer, loop):
        return every(loop.step, trainer.cfg.trainer.eval_every) or loop.step == trainer.cfg.trainer.max_steps

    def measure(self, trainer):
        return trainer.evaluate()


class CheckpointCallback(Callback):
    """A checkpoint every trainer.checkpoint_every steps, at each cooldown branch point and at the end of
    a fit()."""

    def after_step(self, trainer, loop, metrics):
        if loop.stop_requested:
            return
        t = trainer.cfg.trainer
        if not (every(loop.step, t.checkpoint_every) or loop.at_end or loop.step in trainer.checkpointer.keep_steps):
            return
        with loop.speed.paused():
            trainer.save()
        loop.paused_work = True


def default_callbacks() -> List[Callback]:
    """The trainer's callbacks, in order: metrics, preemption, gradient cosine, evaluation, checkpoint."""
    return [MetricsCallback(), PreemptionCallback(), GradientCosineCallback(), EvaluationCallback(),
            CheckpointCallback()]


def release_garbage() -> None:
    """Collect Python's reference cycles now. The first (compiling) step leaves cycles that hold GPU
    tensors; under Nexus, which frees the gradients after every micro-batch, they pinned a gradient-sized
    block (4.5 GiB at 1B on an H100) until the cyclic collector happened to run. Called after the first
    step and after evaluations and checkpoints, not every step: a full collection walks every Python
    object, compiled code's included."""
    gc.collect()


def run_callbacks(callbacks: List[Callback], trainer: "Trainer", loop: LoopState,
                  metrics: Dict[str, torch.Tensor]) -> None:
    """After-step hooks of every callback, then one garbage collection if any did non-training work."""
    loop.step, loop.paused_work = trainer.step, False
    for callback in callbacks:
        callback.after_step(trainer, loop, metrics)
    if loop.paused_work:
        with loop.speed.paused():
            release_garbage()
