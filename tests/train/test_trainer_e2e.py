"""End-to-end CPU training on the embedded corpus: learning, logging, checkpoints, exact resume."""

import json
from pathlib import Path

import pytest
import torch

from nexus_pretrain.demo import compose_config
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.export import load_checkpoint_weights
from nexus_pretrain.train.trainer import Trainer

SMALL = ["model.dim=64", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=128",
         "data.seq_len=32", "data.eval_sequences=4", "trainer.global_batch=8", "trainer.micro_batch=4",
         "schedule.warmup_steps=2", "schedule.decay_steps=4", "logging.progress_bar=false"]


def small_config(run_dir: Path, *overrides: str):
    return compose_config([*SMALL, f"trainer.run_dir={run_dir}", *overrides])


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_training_lowers_loss_logs_checkpoints_and_exports(tmp_path):
    cfg = small_config(tmp_path, "trainer.max_steps=12", "trainer.log_every=2", "trainer.eval_every=6",
                       "trainer.checkpoint_every=4", "trainer.keep_last=2", "logging.cosine_every=5")
    trainer = Trainer(cfg)
    before = trainer.evaluate()["val/pretrain"]
    final = trainer.fit()
    assert final["val/pretrain"] < before - 0.5
    records = read_metrics(tmp_path)
    train_records = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_records] == [2, 4, 6, 8, 10, 12]
    assert {"grad_norm", "lr", "tokens_per_s", "tokens"} <= set(train_records[0])
    for r in train_records:  # per-domain training loss: the overall loss is a mixture of them
        per_domain = [r[f"train/{d}"] for d in ("web", "math", "code") if f"train/{d}" in r]
        assert len(per_domain) >= 2 and min(per_domain) <= r["loss"] <= max(per_domain)
    assert train_records[-1]["tokens"] == 12 * 8 * 32
    assert [r["step"] for r in records if "val/pretrain" in r] == [6, 12]
    assert [r["step"] for r in records if "cos/mean" in r] == [5, 10]  # independent of log_every
    assert {"val/web", "val/math", "val/code", "ood/legal", "ood/mean"} <= set(records[-1])
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000008", "step_00000012"]
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "tokenizer.json").is_file()
    assert (tmp_path / "config.yaml").is_file()


@pytest.mark.parametrize("optim", ["adamw", "nexus"])
def test_resume_continues_bit_exactly(tmp_path, optim):
    common = ["trainer.max_steps=10", "trainer.log_every=1", "trainer.eval_every=0", "trainer.export_hf=false",
              f"optim={optim}"]
    straight = tmp_path / "straight"
    Trainer(small_config(straight, *common, "trainer.checkpoint_every=0")).fit()

    interrupted = tmp_path / "interrupted"
    Trainer(small_config(interrupted, *common, "trainer.checkpoint_every=4")).fit(until_step=6)
    assert ckpt.latest_checkpoint(interrupted).name == "step_00000006"
    # A half-written checkpoint from a crash must be ignored.
    (ckpt.checkpoint_root(interrupted) / "step_00000007").mkdir()
    resumed = Trainer(small_config(interrupted, *common, "trainer.checkpoint_every=4", "trainer.resume=auto"))
    final = resumed.fit()
    assert final["resumed_from"] == 6

    losses = lambda d: [r["loss"] for r in read_metrics(d) if "loss" in r]  # noqa: E731
    assert losses(interrupted) == losses(straight)  # bit-exact on CPU, steps 1-10
    # Per-domain tokens consumed: logged every line, carried across the restart, summing to all tokens seen.
    counts = lambda d: [{k: v for k, v in r.items() if k.startswith("tokens/")}  # noqa: E731
                        for r in read_metrics(d) if "loss" in r]
    assert counts(interrupted) == counts(straight)
    for step, record in enumerate(counts(straight), start=1):
        assert sum(record.values()) == step * 8 * 32 and len(record) == 3
    assert resumed.domain_tokens() == {k[len("tokens/"):]: v for k, v in counts(straight)[-1].items()}
    # Each start records what it ran on: the first at step 0, the resume at its checkpoint's step.
    starts = [json.loads(line) for line in (interrupted / "environment.jsonl").read_text().splitlines()]
    assert [s["step"] for s in starts] == [0, 6]
    assert all(s["versions"]["torch"] == torch.__version__ and s["device"] == "cpu" for s in starts)
    restored = ckpt.read_meta(ckpt.latest_checkpoint(interrupted))["domain_tokens"]
    assert restored == resumed.domain_tokens() and sum(restored.values()) == 10 * 8 * 32
    a, b = (checkpoint_weights(ckpt.latest_checkpoint(d)) for d in (straight, interrupted))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def checkpoint_weights(checkpoint: Path) -> dict:
    """The model weights stored in a checkpoint."""
    return load_checkpoint_weights(checkpoint)[1]


def test_reference_cycles_of_the_first_step_do_not_outlive_it(tmp_path):
    """A compiling first step leaves reference cycles holding tensors (on CUDA they held a gradient
    copy under Nexus); the trainer collects them after that step, not whenever Python's collector runs."""
    import gc
    import weakref

    cfg = small_config(tmp_path, "optim=nexus", "trainer.max_steps=6", "trainer.log_every=1",
                       "trainer.eval_every=0", "trainer.checkpoint_every=0")
    trainer = Trainer(cfg)
    forward, cycle_refs, alive_in_step = trainer.model.forward, [], {}

    def forward_leaving_a_cycle(*args, **kwargs):
        if trainer.step == 0 and not cycle_refs:
            holder = {"tensor": torch.zeros(1000)}
            holder["self"] = holder  # unreachable after this call, freed only by the cyclic collector
            cycle_refs.append(weakref.ref(holder["tensor"]))
        alive_in_step.setdefault(trainer.step, cycle_refs[0]() is not None)
        return forward(*args, **kwargs)

    trainer.model.forward = forward_leaving_a_cycle
    gc.disable()
    try:
        trainer.fit()
    finally:
        gc.enable()
    assert alive_in_step[0] and sorted(alive_in_step) == [0, 1, 2, 3, 4, 5, 6]  # 6: the final evaluation
    assert not any(alive for step, alive in alive_in_step.items() if step > 0)
