"""The training loop. It never asks which optimizer or backend it runs (see optim/base.py and
train/backends/base.py); logging, evaluation and checkpoints happen between steps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import OmegaConf

from nexus_pretrain.config import TrainConfig, validate
from nexus_pretrain.data.build import RunData, build_data
from nexus_pretrain.data.loader import MicroBatchLoader
from nexus_pretrain.data.sampler import MicroBatch, eval_batches
from nexus_pretrain.evaluation.heldout import heldout_metrics
from nexus_pretrain.model.llama import Llama, count_parameters, flops_per_token, lm_loss, sequence_losses
from nexus_pretrain.model.presets import resolve_model_args
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.optim.schedule import lr_multiplier
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.backends import build_backend
from nexus_pretrain.train.metrics import MetricsLogger, Throughput


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Trainer:
    """Builds data, model, optimizer and backend from a TrainConfig and runs the step loop."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        t = cfg.trainer
        self.backend = build_backend(cfg.backend, compile=t.compile, activation_checkpointing=t.activation_checkpointing)
        validate(cfg, world_size=self.backend.world_size)
        if t.deterministic:
            torch.use_deterministic_algorithms(True)
        self.run_dir = Path(t.run_dir)
        self.data: RunData = build_data(cfg.data, seed=t.seed)
        torch.manual_seed(t.seed)  # the model is initialised on CPU so every device gets the same weights
        self.model_args = resolve_model_args(cfg.model, len(self.data.tokenizer), cfg.data.seq_len)
        self.model: Llama = self.backend.prepare(Llama(self.model_args))
        self.optimizer = build_optimizer(cfg.optim, self.model, seed=t.seed)
        self.accumulation = t.global_batch // (t.micro_batch * self.backend.world_size)
        self.n_params = count_parameters(self.model)
        self.step = 0
        n_domains = len(self.data.sampler.domains)
        # Per-domain training loss since the last log: summed sequence losses and sequence counts.
        self._domain_loss = torch.zeros(n_domains, device=self.backend.device)
        self._domain_rows = torch.zeros(n_domains, device=self.backend.device)
        # Tokens consumed per domain over the whole run (all ranks), and this rank's sequences not yet added.
        self._domain_tokens = torch.zeros(n_domains, dtype=torch.int64, device=self.backend.device)
        self._pending_rows = torch.zeros(n_domains, dtype=torch.int64, device=self.backend.device)
        self.loader = MicroBatchLoader(self.data.sampler, self.accumulation, t.micro_batch, self.backend.rank,
                                       self.backend.world_size, t.max_steps, cfg.data.num_workers,
                                       pin_memory=self.backend.device.type == "cuda")

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Any]:
        """Everything that makes a resumed run continue exactly: model, optimizer, step, RNG."""
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": ckpt.rng_state(),
            "domain_tokens": self.domain_tokens(),
            "config": OmegaConf.to_container(OmegaConf.structured(self.cfg), resolve=True),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a state_dict (the data position is the step: batches are a function of it)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        ckpt.set_rng_state(state["rng"])
        self.step = state["step"]
        consumed = state.get("domain_tokens", {})
        self._domain_tokens = torch.tensor([consumed.get(d, 0) for d in self.data.sampler.domains],
                                           dtype=torch.int64, device=self.backend.device)
        self._pending_rows.zero_()

    def save(self) -> Path:
        """Checkpoint the current step."""
        return ckpt.save_checkpoint(self.run_dir, self.step, self.state_dict(), self.cfg.trainer.keep_last)

    def maybe_resume(self) -> bool:
        """With trainer.resume, load the newest complete checkpoint of run_dir; True if one was loaded."""
        if not self.cfg.trainer.resume:
            return False
        latest = ckpt.latest_checkpoint(self.run_dir)
        if latest is None:
            return False
        self.load_state_dict(ckpt.load_checkpoint(latest))
        return True

    # ------------------------------------------------------------------------------------ step
    def micro_batch(self, micro: int) -> MicroBatch:
        """This rank's micro-batch ``micro`` of the current step, on the device."""
        return self.loader.get(self.step, micro).to(self.backend.device)

    def train_step(self) -> Dict[str, torch.Tensor]:
        """One optimizer step over the accumulation window; returns device-side metrics."""
        multiplier = lr_multiplier(self.cfg.schedule, self.step, self.cfg.trainer.max_steps)
        self.optimizer.set_lr_multiplier(multiplier)
        loss_sum = torch.zeros((), device=self.backend.device)
        for micro in range(self.accumulation):
            batch = self.micro_batch(micro)
            with self.backend.autocast():
                row_losses = sequence_losses(self.model(batch.inputs), batch.targets)
            loss = row_losses.mean()
            (loss / self.accumulation).backward()
            self.optimizer.micro_step()
            loss_sum += loss.detach()
            self._domain_loss.index_add_(0, batch.domain_ids, row_losses.detach())
            self._domain_rows.index_add_(0, batch.domain_ids, torch.ones_like(row_losses.detach()))
            self._pending_rows.index_add_(0, batch.domain_ids, torch.ones_like(batch.domain_ids))
        metrics = self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        metrics["loss"] = self.backend.all_reduce_mean(loss_sum / self.accumulation)
        metrics["lr"] = torch.tensor(self.cfg.optim.lr * multiplier)
        return metrics

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
        """Per-domain validation loss, the mixture-weighted pretrain loss and the OOD loss."""
        d = self.cfg.data
        return heldout_metrics(self.model, self.data.val_streams, self.data.ood_streams, self.data.sampler.weights,
                               d.seq_len, d.eval_sequences, self.cfg.trainer.micro_batch, self.backend.device,
                               self.backend.autocast)

    def domain_cosine(self) -> Dict[str, float]:
        """Mean pairwise cosine of per-domain gradients at the current parameters (paper Sec. 5.1).

        Each domain's gradient is taken on its first data.eval_sequences validation windows.
        """
        from nexus_pretrain.analysis.grad_similarity import domain_gradient_cosine

        d, device = self.cfg.data, self.backend.device
        batches = {name: [b.to(device) for b in eval_batches(stream, d.seq_len, d.eval_sequences, self.cfg.trainer.micro_batch)]
                   for name, stream in self.data.val_streams.items()}

        def mean_loss(model, micro_batches):
            with self.backend.autocast():
                losses = [lm_loss(model(b.inputs), b.targets) for b in micro_batches]
            return torch.stack(losses).mean()

        return domain_gradient_cosine(self.model, mean_loss, batches)

    # ------------------------------------------------------------------------------------ loop
    def fit(self, until_step: Optional[int] = None) -> Dict[str, float]:
        """Train to trainer.max_steps (or stop early after ``until_step``, as a preemption would).

        Returns the last logged metrics merged with the final evaluation.
        """
        t, log_cfg = self.cfg.trainer, self.cfg.logging
        resumed = self.maybe_resume()
        stop = min(t.max_steps, until_step) if until_step is not None else t.max_steps
        run_config = OmegaConf.to_container(OmegaConf.structured(self.cfg), resolve=True)
        if self.backend.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(OmegaConf.create(run_config), self.run_dir / "config.yaml")
        logger = MetricsLogger(log_cfg, self.run_dir, t.max_steps, enabled=self.backend.is_main,
                               run_config=run_config, start_step=self.step)
        tokens_per_step = t.global_batch * self.cfg.data.seq_len
        speed = Throughput(flops_per_token(self.model_args, self.cfg.data.seq_len, self.n_params), self.backend.device)
        last: Dict[str, float] = {"resumed_from": float(self.step)} if resumed else {}
        window_loss, window_steps = 0.0, 0
        try:
            while self.step < stop:
                metrics = self.train_step()
                speed.add(tokens_per_step)
                logger.advance()
                window_loss = metrics["loss"] + window_loss
                window_steps += 1
                at_end = self.step == stop
                if self.step % t.log_every == 0 or at_end:
                    record = {k: float(v) for k, v in metrics.items()}
                    record["loss"] = float(window_loss) / window_steps
                    if not math.isfinite(record["loss"]):
                        raise NonFiniteLossError(f"non-finite loss {record['loss']} at step {self.step}")
                    record.update(self.domain_training_losses())
                    record.update(speed.rates())
                    record["tokens"] = float(self.step * tokens_per_step)
                    record.update({f"tokens/{d}": float(n) for d, n in self.domain_tokens().items()})
                    logger.log(self.step, record)
                    last.update(record)
                    window_loss, window_steps = 0.0, 0
                self._between_steps(logger, speed, last, at_end)
        finally:
            self.loader.close()
            logger.close()
        if self.step == t.max_steps and t.export_hf and self.backend.is_main:
            self.export(self.run_dir / "hf")
        return last

    def _between_steps(self, logger: MetricsLogger, speed: Throughput, last: Dict[str, float], at_end: bool) -> None:
        """Gradient-cosine measurement, evaluation and checkpoint when due (their time is not
        counted in tokens/s)."""
        t, every = self.cfg.trainer, lambda n: bool(n) and self.step % n == 0
        measure_cosine = every(self.cfg.logging.cosine_every)
        evaluate = every(t.eval_every) or self.step == t.max_steps
        checkpoint = every(t.checkpoint_every) or at_end
        if not (measure_cosine or evaluate or checkpoint):
            return
        with speed.paused():
            for due, measure in ((measure_cosine, self.domain_cosine), (evaluate, self.evaluate)):
                if due:
                    values = measure()
                    logger.log(self.step, values)
                    last.update(values)
            if checkpoint:
                self.save()

    def export(self, out_dir: Path) -> Path:
        """Write the current weights and tokenizer as a Hugging Face model directory."""
        from nexus_pretrain.model.hf import export_hf

        return export_hf(self.model, out_dir, tokenizer=self.data.tokenizer)
