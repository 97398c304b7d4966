"""The training loop. It never asks which optimizer or backend it runs (see optim/base.py and
train/backends/base.py); logging, evaluation and checkpoints are callbacks (train/callbacks.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from omegaconf import OmegaConf

from nexus_pretrain.config import TrainConfig
from nexus_pretrain.config_checks import validate
from nexus_pretrain.data.build import RunData
from nexus_pretrain.data.layout import batch_layout
from nexus_pretrain.data.loader import MicroBatchLoader
from nexus_pretrain.data.sampler import MicroBatch, eval_batches
from nexus_pretrain.evaluation.heldout import heldout_metrics
from nexus_pretrain.evaluation.inloop import DownstreamProbe
from nexus_pretrain.model.float8 import evaluation_forward, float8_layers, float8_mode, recorded_mode
from nexus_pretrain.model.hf import export_hf_state
from nexus_pretrain.model.llama import Llama, count_parameters, flops_per_token, lm_loss
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.optim.grad_similarity import domain_gradient_cosine
from nexus_pretrain.optim.schedule import lr_multiplier
from nexus_pretrain.run_data import build_data
from nexus_pretrain.rundir.environment import record_environment
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train import run_identity
from nexus_pretrain.train.backends import build_backend
from nexus_pretrain.train.backends.single import recorded_precision
from nexus_pretrain.train.callbacks import Callback, LoopState, default_callbacks, release_garbage, run_callbacks
from nexus_pretrain.train.cooldown import cooldown_steps
from nexus_pretrain.train.init_weights import load_pretrained
from nexus_pretrain.train.metrics import MetricsLogger, Throughput
from nexus_pretrain.train.preflight import inner_step_ratio, preflight, warn_if_fp8_hides_inner_steps

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Trainer:
    """Builds data, model, optimizer and backend from a TrainConfig and runs the step loop."""
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        t = cfg.trainer
        self.backend = build_backend(cfg.backend, compile=t.compile, activation_checkpointing=t.activation_checkpointing,
                                     micro_batch=t.micro_batch)
        validate(cfg, world_size=self.backend.world_size)
        if t.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts (first matmul)
            torch.use_deterministic_algorithms(True)
        self.run_dir = Path(t.run_dir)
        self.data: RunData = build_data(cfg.data, seed=t.seed)
        torch.manual_seed(t.seed)  # the model is initialised on CPU so every rank gets the same weights
        self.model_args = resolve_model_args(cfg.model, len(self.data.tokenizer), cfg.data.seq_len)
        model = Llama(self.model_args)
        model.recompute_every = cfg.trainer.activation_checkpointing_every
        if t.init_from:  # weights only: optimizer, step and schedule start fresh (e.g. SFT)
            load_pretrained(model, t.init_from)
        self.n_params = count_parameters(model)
        # Read over every weight, so only where the warning below can fire; on the whole model, before sharding.
        may_warn = self.backend.is_main and float8_mode(cfg.model.float8) != "false"
        step_ratio = inner_step_ratio(cfg.optim, model) if may_warn else None
        self.model, self.optimizer = self.backend.setup(model, cfg.optim, seed=t.seed)
        fp8_layers = float8_layers(self.model)
        # The config as the run records it, auto resolved to what it does here, before resume compares configs
        self.cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, float8=recorded_mode(cfg.model.float8, fp8_layers)),
            backend=dataclasses.replace(cfg.backend, precision=recorded_precision(cfg.backend.precision,
                                                                                  self.backend.device)))
        if self.backend.is_main:
            warn_if_fp8_hides_inner_steps(step_ratio, fp8_layers, cfg.optim.inner_lr)
        self.layout = batch_layout(t.global_batch, cfg.optim.inner_steps, self.backend.world_size, t.micro_batch)
        self.checkpointer = ckpt.Checkpointer(self.run_dir, self.backend, t.keep_last, keep_steps=cooldown_steps(cfg))
        self.shard_check = preflight(cfg, self.data, self.run_dir, self.n_params, is_main=self.backend.is_main)
        self.step = 0
        self.skipped_steps = 0
        n_domains = len(self.data.sampler.domains)
        # Per-domain training loss since the last log: summed sequence losses and sequence counts.
        self._domain_loss = torch.zeros(n_domains, device=self.backend.device)
        self._domain_rows = torch.zeros(n_domains, device=self.backend.device)
        # Tokens consumed per domain over the whole run (all ranks), and this rank's sequences not yet added.
        self._domain_tokens = torch.zeros(n_domains, dtype=torch.int64, device=self.backend.device)
        self._pending_rows = torch.zeros(n_domains, dtype=torch.int64, device=self.backend.device)
        # Each step's per-pass losses on this rank and its (pseudo-)gradient norm, kept until the next log line
        # so that a NaN names its step, pass and domains without a host sync per step; and a device-side flag
        # raised by any non-finite loss or gradient norm, checked before logging, evaluating and saving.
        self._window_losses: List[Tuple[int, torch.Tensor, torch.Tensor]] = []
        self._nonfinite = torch.zeros((), dtype=torch.bool, device=self.backend.device)
        self.loader = MicroBatchLoader(self.data.sampler, self.layout, self.backend.rank, t.max_steps,
                                       cfg.data.num_workers, pin_memory=self.backend.device.type == "cuda")
        self.stop_signal: Optional[int] = None
        self.downstream: Optional[DownstreamProbe] = None
        if t.eval_tasks:
            self.downstream = DownstreamProbe.build(t.eval_tasks, t.eval_data_dir, self.data.tokenizer,
                                                    self.model_args.max_seq_len, t.eval_task_limit)
        self.callbacks: List[Callback] = default_callbacks()
        """Run after every step, in order (train/callbacks.py); append one to add a measurement."""

    # ----------------------------------------------------------------------------------- state
    def save(self) -> Path:
        """Checkpoint the current step: model, optimizer, RNG, step and per-domain tokens (collective);
        refused (NonFiniteLossError) when a step since the last check was not finite."""
        self.check_finite()
        meta = {"domain_tokens": self.domain_tokens(), "skipped_steps": self.skipped_steps,
                "config": OmegaConf.to_container(OmegaConf.structured(self.cfg), resolve=True)}
        return self.checkpointer.save(self.step, self.model, self.optimizer, meta)

    def resume_from(self, checkpoint: Path) -> None:
        """Load a checkpoint: the run continues exactly where it was saved (the data position is the
        step, since batches are a function of it)."""
        meta = self.checkpointer.load(Path(checkpoint), self.model, self.optimizer)
        self.step = meta["step"]
        self.skipped_steps = meta.get("skipped_steps", 0)
        consumed = meta.get("domain_tokens", {})
        self._domain_tokens = torch.tensor([consumed.get(d, 0) for d in self.data.sampler.domains],
                                           dtype=torch.int64, device=self.backend.device)
        self._pending_rows.zero_()

    def maybe_resume(self) -> bool:
        """Apply trainer.resume (never; auto: the newest intact checkpoint; or a path) once per trainer,
        after run_identity's checks (same run, a directory of its own); True if a checkpoint was loaded.
        A later fit() of this trainer continues from its state in memory."""
        if getattr(self, "_started", False):
            return False
        checkpoint = run_identity.start_on_every_rank(self.cfg, self.backend)
        self._started = True
        if checkpoint is None:
            return False
        self.resume_from(checkpoint)
        return True

    # ------------------------------------------------------------------------------------ step
    def micro_batch(self, pass_index: int) -> MicroBatch:
        """This rank's forward/backward pass ``pass_index`` of the current step, on the device."""
        return self.loader.get(self.step, pass_index).to(self.backend.device)

    def train_step(self) -> Dict[str, torch.Tensor]:
        """One optimizer step: K inner batches (data/layout.py), each followed by the optimizer's
        micro_step; returns device-side metrics.

        ``loss`` (and train/<domain>) is the mean loss of the step's first inner batch, the one every
        optimizer evaluates at the weights it holds (Nexus evaluates later inner batches at inner weights);
        ``inner_loss`` is the mean over all inner batches where the optimizer evaluated them.
        """
        multiplier = lr_multiplier(self.cfg.schedule, self.step, self.cfg.trainer.max_steps)
        self.optimizer.set_lr_multiplier(multiplier)
        layout, per_inner_batch = self.layout, self.optimizer.consumes_each_inner_batch
        local = layout.local_micro_batches
        # Gradient of the inner batch's mean loss (Nexus), or of the global batch's mean loss (accumulating).
        weight = 1.0 / local if per_inner_batch else 1.0 / (local * layout.inner_steps)
        pass_losses = []
        domain_loss, domain_rows = torch.zeros_like(self._domain_loss), torch.zeros_like(self._domain_rows)
        for inner in range(layout.inner_steps):
            for micro in range(local):
                batch = self.micro_batch(inner * local + micro)
                with self.backend.autocast():
                    row_losses = self.model(batch.inputs, batch.targets)
                loss = row_losses.mean()
                last_pass = micro == local - 1
                self.backend.backward(loss * weight, sync=last_pass and (per_inner_batch or inner == layout.inner_steps - 1))
                pass_losses.append(loss.detach())
                if inner == 0:
                    domain_loss.index_add_(0, batch.domain_ids, row_losses.detach())
                    domain_rows.index_add_(0, batch.domain_ids, torch.ones_like(row_losses.detach()))
                self._pending_rows.index_add_(0, batch.domain_ids, torch.ones_like(batch.domain_ids))
            self.optimizer.micro_step()
        pass_losses = torch.stack(pass_losses)
        first_loss, inner_loss = self.backend.all_reduce_mean(
            torch.stack([pass_losses[:local].mean(), pass_losses.mean()])).unbind()
        skip = bool(self.cfg.trainer.skip_nonfinite)
        metrics = {} if skip and not torch.isfinite(inner_loss) else self.optimizer.step(skip_nonfinite=skip)
        if skip and ("skipped" in metrics or not metrics):
            self._skip_step(pass_losses, metrics.get("grad_norm"))
            metrics = {}  # no loss: a skipped step does not enter the logged mean
        else:
            self._window_losses.append((self.step, pass_losses, metrics["grad_norm"]))
            self._nonfinite |= ~(torch.isfinite(inner_loss) & torch.isfinite(metrics["grad_norm"]))
            self.optimizer.zero_grad()
            metrics["loss"] = first_loss
            metrics["inner_loss"] = inner_loss
            self._domain_loss += domain_loss
            self._domain_rows += domain_rows
        self.step += 1
        metrics["lr"] = torch.tensor(self.cfg.optim.lr * multiplier)
        return metrics

    def _skip_step(self, pass_losses: torch.Tensor, grad_norm: Optional[torch.Tensor]) -> None:
        """Drop a step whose loss or (pseudo-)gradient norm is not finite (parameters back to the step's
        start), or stop the run when trainer.skip_nonfinite steps were already dropped."""
        self.optimizer.discard()
        what = self._describe_nonfinite(self.step, pass_losses, grad_norm)
        if self.skipped_steps >= self.cfg.trainer.skip_nonfinite:
            raise NonFiniteLossError(f"{what}; {self.skipped_steps} step(s) already skipped (trainer.skip_nonfinite)")
        self.skipped_steps += 1
        if self.backend.is_main:
            log.warning(f"warning: skipped {what} ({self.skipped_steps}/{self.cfg.trainer.skip_nonfinite})")

    def _describe_nonfinite(self, step: int, pass_losses: torch.Tensor, grad_norm: Optional[torch.Tensor]) -> str:
        """Where a non-finite value came from: step, inner batch, pass and its domains on this rank, or the
        step's (pseudo-)gradient norm when every loss was finite."""
        bad = [i for i, value in enumerate(pass_losses.tolist()) if not math.isfinite(value)]
        if not bad:
            if grad_norm is not None and not math.isfinite(float(grad_norm)):
                return (f"non-finite gradient norm {float(grad_norm)} at step {step + 1} with finite losses "
                        f"(optim.max_grad_norm clips that norm; look for an overflow in the backward pass)")
            return f"non-finite loss at step {step + 1} on another rank than rank {self.backend.rank}"
        pass_index = bad[0]
        batch = self.data.sampler.micro_batch(step, self.layout, pass_index, self.backend.rank)
        domains = ", ".join(sorted(set(batch.domains)))
        inner, micro = self.layout.position(pass_index)
        return (f"non-finite loss {pass_losses[pass_index].item()} at step {step + 1}, inner batch {inner}, "
                f"micro-batch {micro} of rank {self.backend.rank} (domains: {domains})")

    def check_finite(self) -> None:
        """Raise NonFiniteLossError if any step since the previous check had a non-finite loss or
        (pseudo-)gradient norm (one host sync; every rank sees the same flag, since losses are averaged
        over ranks and norms are global). Called before logging, evaluating, saving and exporting; the steps
        it checked are forgotten."""
        window, self._window_losses = self._window_losses, []
        if not bool(self._nonfinite):
            return
        for step, losses, grad_norm in window:
            if not (torch.isfinite(losses).all() and torch.isfinite(grad_norm)):
                raise NonFiniteLossError(self._describe_nonfinite(step, losses, grad_norm))
        raise NonFiniteLossError(f"non-finite loss before step {self.step} on a rank other than {self.backend.rank}")

    def domain_training_losses(self) -> Dict[str, float]:
        """Mean training loss per domain since the previous call (train/<domain>), then reset."""
        sums = self.backend.all_reduce_mean(self._domain_loss).tolist()
        rows = self.backend.all_reduce_mean(self._domain_rows).tolist()
        self._domain_loss.zero_()
        self._domain_rows.zero_()
        return {f"train/{d}": s / n for d, s, n in zip(self.data.sampler.domains, sums, rows) if n > 0}

    def domain_tokens(self) -> Dict[str, int]:
        """Training tokens consumed so far per domain, summed over ranks (exact across resume)."""
        world = self.backend.world_size
        # The mean of integer counts times the world size is their sum; round() undoes float error.
        rows = torch.round(self.backend.all_reduce_mean(self._pending_rows.double()) * world).long()
        self._domain_tokens += rows * self.cfg.data.seq_len
        self._pending_rows.zero_()
        return dict(zip(self.data.sampler.domains, self._domain_tokens.tolist()))

    # ------------------------------------------------------------------------------------ eval
    def evaluate(self) -> Dict[str, float]:
        """Per-domain validation loss, the mixture-weighted pretrain loss and the OOD loss; with
        trainer.eval_tasks also downstream/<task> and the seconds it took (time/downstream_s)."""
        d = self.cfg.data
        with evaluation_forward(self.model):  # model.float8_eval
            values = heldout_metrics(self.model, self.data.val_streams, self.data.ood_streams,
                                     self.data.sampler.weights, d.seq_len, d.eval_sequences,
                                     self.cfg.trainer.micro_batch, self.backend.device, self.backend.autocast)
            if self.downstream is not None:
                start = time.perf_counter()
                values.update(self.downstream.losses(self.model, self.backend.device, self.backend.autocast,
                                                     self.cfg.trainer.micro_batch))
                values["time/downstream_s"] = time.perf_counter() - start
        return values

    def domain_cosine(self) -> Dict[str, float]:
        """Mean pairwise cosine of per-domain gradients at the current parameters (paper Sec. 5.1).

        Each domain's gradient is taken on its first data.eval_sequences validation windows.
        """

        d, device = self.cfg.data, self.backend.device
        batches = {name: [b.to(device) for b in eval_batches(stream, d.seq_len, d.eval_sequences, self.cfg.trainer.micro_batch)]
                   for name, stream in self.data.val_streams.items()}

        def micro_batch_loss(model, batch):
            with self.backend.autocast():
                return lm_loss(model(batch.inputs), batch.targets)

        return domain_gradient_cosine(self.model, micro_batch_loss, batches, accumulate=True)

    # ------------------------------------------------------------------------------------ loop
    def fit(self, until_step: Optional[int] = None) -> Dict[str, float]:
        """Train to trainer.max_steps (or stop early after ``until_step``, as a preemption would).

        After every step the callbacks (train/callbacks.py) log, evaluate, checkpoint and handle SIGTERM or
        SIGUSR1 (Slurm preemption: a checkpoint at the next log step, then stop). Returns the last logged
        metrics merged with the final evaluation ("preempted": 1 when a signal stopped the run).
        """
        t = self.cfg.trainer
        resumed = self.maybe_resume()
        run_config = OmegaConf.to_container(OmegaConf.structured(self.cfg), resolve=True)
        if self.backend.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(OmegaConf.create(run_config), self.run_dir / "config.yaml")
            record_environment(self.run_dir, self.step, self.backend.device, self.backend.world_size)
        loop = LoopState(
            logger=MetricsLogger(self.cfg.logging, self.run_dir, t.max_steps, enabled=self.backend.is_main,
                                 run_config=run_config, start_step=self.step),
            speed=Throughput(flops_per_token(self.model_args, self.cfg.data.seq_len, self.n_params),
                             self.backend.device, self.backend.world_size),
            stop=min(t.max_steps, until_step) if until_step is not None else t.max_steps,
            last={"resumed_from": float(self.step)} if resumed else {})
        tokens_per_step, first_step = t.global_batch * self.cfg.data.seq_len, True
        try:
            with preemption_signals(self):
                while self.step < loop.stop and not loop.stop_requested:
                    metrics = self.train_step()
                    if first_step:  # the first (compiling) step's reference cycles
                        first_step = False
                        with loop.speed.paused():
                            release_garbage()
                    loop.speed.add(tokens_per_step)
                    loop.logger.advance()
                    run_callbacks(self.callbacks, self, loop, metrics)
            self.checkpointer.wait()
        finally:
            self.loader.close()
            loop.logger.close()
        if self.step == t.max_steps and t.export_hf:
            self.export(self.run_dir / "hf")
        return loop.last

    def signalled(self) -> bool:
        """Whether any rank received a preemption signal (all ranks agree; collective)."""
        flag = torch.tensor(1.0 if self.stop_signal is not None else 0.0, device=self.backend.device)
        return bool(self.backend.all_reduce_mean(flag) > 0)

    @property
    def is_main(self) -> bool:
        """Whether this process is the rank that logs and writes shared files."""
        return self.backend.is_main

    def close(self) -> None:
        """Release the backend (process groups); the trainer is unusable afterwards."""
        self.backend.close()

    def export(self, out_dir: Path) -> Optional[Path]:
        """Write the current weights and tokenizer as a Hugging Face model directory (collective; the
        main rank writes, and gets the path)."""

        self.check_finite()
        state = self.backend.full_state_dict(self.model)
        if not self.backend.is_main:
            return None
        return export_hf_state(self.model_args, state, out_dir, tokenizer=self.data.tokenizer)


@contextlib.contextmanager
def preemption_signals(trainer: Trainer):
    """While training, SIGTERM/SIGUSR1 set trainer.stop_signal instead of killing the process (restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def handler(signum, frame):  # noqa: ARG001
        trainer.stop_signal = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
