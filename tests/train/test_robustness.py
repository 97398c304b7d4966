"""Robustness of the loop: SIGTERM checkpoints and stops, SIGKILL at a random step resumes bit-exactly,
non-finite losses stop the run with their step and domains (or are skipped up to a limit)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nexus_pretrain.demo import compose_config
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.trainer import NonFiniteLossError, Trainer

SMALL = ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
         "data.seq_len=16", "data.eval_sequences=2", "trainer.global_batch=4", "trainer.micro_batch=2",
         "schedule.warmup_steps=2", "schedule.decay_steps=4", "logging.progress_bar=false", "trainer.log_every=1",
         "trainer.eval_every=0", "trainer.export_hf=false", "optim=nexus", "backend.device=cpu"]


def logged_losses(run_dir: Path) -> dict:
    """Step -> loss; after a resume the re-run steps' lines come later and win."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def launch(run_dir: Path, *overrides: str) -> subprocess.Popen:
    args = [*SMALL, f"trainer.run_dir={run_dir}", *overrides]
    return subprocess.Popen([sys.executable, "-c", "from nexus_pretrain.cli import train; train()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for_step(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while max(logged_losses(run_dir), default=0) < step:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "training did not reach the step in time"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_checkpoints_then_sigkill_and_resume_match_uninterrupted_run(tmp_path):
    steps = 60
    straight = tmp_path / "straight"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the launched runs (launch): a CPU reduction's result depends on its thread count
    try:
        Trainer(compose_config([*SMALL, f"trainer.run_dir={straight}", f"trainer.max_steps={steps}",
                                "trainer.checkpoint_every=0"])).fit()
    finally:
        torch.set_num_threads(threads)

    run = tmp_path / "run"
    common = [f"trainer.max_steps={steps}", "trainer.checkpoint_every=1", "trainer.keep_last=2", "trainer.resume=auto"]
    # 1. Preemption: SIGTERM makes the run save a checkpoint at the step it reached and exit cleanly.
    proc = launch(run, *common)
    wait_for_step(proc, run, 3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "stopped by a signal" in out
    stopped_at = int(ckpt.read_meta(ckpt.latest_checkpoint(run))["step"])
    assert stopped_at == max(logged_losses(run)) < steps

    # 2. A crash: SIGKILL at a random later step, while checkpoints are being written every step.
    proc = launch(run, *common)
    kill_at = random.Random().randint(stopped_at + 2, stopped_at + 12)
    wait_for_step(proc, run, kill_at)
    proc.kill()
    proc.wait(timeout=60)
    assert ckpt.latest_checkpoint(run) is not None

    # 3. Resume to the end: every step's loss equals the uninterrupted run's, bit for bit.
    proc = launch(run, *common)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert logged_losses(run) == logged_losses(straight)


class _PoisonAt(torch.nn.Module):
    """Wraps a model; its output is NaN during the given step (read from the trainer)."""

    def __init__(self, model, trainer, step):
        super().__init__()
        self.model, self.trainer, self.step = model, trainer, step

    def forward(self, inputs, targets=None):
        out = self.model(inputs, targets)
        return out * float("nan") if self.trainer.step == self.step else out


@pytest.mark.parametrize("schedule", ["wsd", "cosine"])
def test_resume_in_warmup_or_decay_continues_the_schedule_exactly(tmp_path, schedule):
    """A checkpoint taken where the learning rate is changing resumes with the scheduled rates (the
    restored optimizer must keep scaling the configured peak, not the last scheduled value)."""
    run = [*SMALL, f"schedule={schedule}", "schedule.warmup_steps=2", "schedule.decay_steps=4",
           "trainer.max_steps=6", "trainer.checkpoint_every=1"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    Trainer(compose_config([*run, f"trainer.run_dir={straight}"])).fit()
    Trainer(compose_config([*run, f"trainer.run_dir={resumed}"])).fit(until_step=3)  # step 3: decaying
    Trainer(compose_config([*run, f"trainer.run_dir={resumed}", "trainer.resume=auto"])).fit()
    records = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    want = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["lr"] for r in want if "lr" in r}
    assert {r["step"]: r["lr"] for r in records if "lr" in r} == lr
    assert logged_losses(resumed) == logged_losses(straight)


def test_nonfinite_loss_names_step_microbatch_and_domains(tmp_path):
    trainer = Trainer(compose_config([*SMALL, f"trainer.run_dir={tmp_path}", "trainer.max_steps=6",
                                      "trainer.log_every=3", "trainer.checkpoint_every=0"]))
    trainer.model = _PoisonAt(trainer.model, trainer, step=1)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss nan at step 2, inner batch 0, micro-batch 0 of rank 0 \(domains: "):
        trainer.fit()


def test_nonfinite_step_is_skipped_with_parameters_restored(tmp_path):
    trainer = Trainer(compose_config([*SMALL, f"trainer.run_dir={tmp_path}", "trainer.max_steps=6",
                                      "trainer.checkpoint_every=0", "trainer.skip_nonfinite=1"]))
    inner = trainer.model
    trainer.fit(until_step=2)
    before = {k: v.clone() for k, v in inner.state_dict().items()}
    trainer.model = _PoisonAt(inner, trainer, step=2)
    trainer.fit(until_step=3)  # step 3 is poisoned: dropped, the weights are those after step 2
    assert trainer.skipped_steps == 1 and trainer.step == 3
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3 and records[-1]["skipped_steps"] == 1 and "loss" not in records[-1]
    assert not any(k.startswith("train/") for k in records[-1])  # the dropped step's NaN losses are not logged
    for key, value in inner.state_dict().items():
        assert torch.equal(value, before[key]), key
    trainer.model = _PoisonAt(inner, trainer, step=4)  # a second one exceeds trainer.skip_nonfinite=1
    with pytest.raises(NonFiniteLossError, match="1 step\\(s\\) already skipped"):
        trainer.fit()
    assert all(torch.isfinite(v).all() for v in inner.state_dict().values())


def poison_gradient_at(trainer, step):
    """From now on, the first weight's gradient is NaN during ``step`` (the loss stays finite)."""
    weight = next(trainer.model.parameters())
    weight.register_hook(lambda grad: grad * float("nan") if trainer.step == step else grad)


@pytest.mark.parametrize("optim", ["adamw", "nexus"])
def test_a_nonfinite_gradient_with_a_finite_loss_is_skipped_with_parameters_restored(tmp_path, optim):
    trainer = Trainer(compose_config([*SMALL, f"trainer.run_dir={tmp_path}", f"optim={optim}", "trainer.max_steps=6",
                                      "trainer.checkpoint_every=0", "trainer.skip_nonfinite=1"]))
    trainer.fit(until_step=2)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    poison_gradient_at(trainer, step=2)
    trainer.fit(until_step=3)
    assert trainer.skipped_steps == 1
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("optim", ["adamw", "nexus"])
def test_no_checkpoint_holds_the_weights_of_a_nonfinite_step(tmp_path, optim):
    """Logged every 10 steps, checkpointed every 2: a NaN gradient at step 3 stops the run at the step-4
    checkpoint, which is never written; the step-2 checkpoint stays the newest. (Nexus's NaN inner step
    makes the next inner batch's loss NaN, which is what the error then names.)"""
    trainer = Trainer(compose_config([*SMALL, f"trainer.run_dir={tmp_path}", f"optim={optim}", "trainer.max_steps=8",
                                      "trainer.log_every=10", "trainer.checkpoint_every=2", "trainer.eval_every=0"]))
    poison_gradient_at(trainer, step=2)
    first = {"adamw": "gradient norm nan at step 3 with finite losses", "nexus": "loss nan at step 3, inner batch 1"}
    with pytest.raises(NonFiniteLossError, match=f"non-finite {first[optim]}"):
        trainer.fit()
    saved = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert saved == ["step_00000002"], saved


def test_the_per_step_record_kept_for_naming_a_nan_is_forgotten_once_checked(tmp_path):
    """Each step's losses and gradient norm are kept on the device only until the next check (a log line,
    an evaluation, a checkpoint), not for the whole run."""
    trainer = Trainer(compose_config([*SMALL, f"trainer.run_dir={tmp_path}", "trainer.max_steps=8",
                                      "trainer.log_every=3", "trainer.checkpoint_every=0"]))
    trainer.fit(until_step=6)
    assert trainer._window_losses == []  # 6 entries, one per step, before they were dropped once checked
    trainer.train_step()
    trainer.train_step()
    assert [step for step, _, _ in trainer._window_losses] == [6, 7]
    trainer.check_finite()
    assert trainer._window_losses == []
