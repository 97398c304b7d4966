"""Checkpoint atomicity and rotation; metric sinks."""

import json
from types import SimpleNamespace

import pytest
import torch

from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.metrics import MetricsLogger


def test_rotation_keeps_newest(tmp_path):
    for step in (1, 2, 3, 4):
        ckpt.save_checkpoint(tmp_path, step, {"step": step}, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004"]
    assert ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))["step"] == 4


def test_crash_mid_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 5, {"w": torch.ones(3)}, keep_last=3)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 6, {"w": torch.zeros(3)}, keep_last=3)
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000005"
    assert torch.equal(ckpt.load_checkpoint(latest)["w"], torch.ones(3))


def test_rng_state_round_trip():
    state = ckpt.rng_state()
    a = torch.rand(3)
    ckpt.set_rng_state(state)
    assert torch.equal(torch.rand(3), a)


def test_jsonl_and_tensorboard_sinks(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = SimpleNamespace(jsonl=True, progress_bar=False, wandb=False, wandb_project="p", wandb_mode="offline",
                          tensorboard=True)
    logger = MetricsLogger(cfg, tmp_path, total_steps=2)
    logger.log(1, {"loss": 2.5, "lr": 0.1})
    logger.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 2.5, "lr": 0.1}
    assert any((tmp_path / "tb").iterdir())


def test_disabled_logger_writes_nothing(tmp_path):
    cfg = SimpleNamespace(jsonl=True, progress_bar=False, wandb=False, wandb_project="p", wandb_mode="offline",
                          tensorboard=False)
    logger = MetricsLogger(cfg, tmp_path / "rank1", total_steps=2, enabled=False)
    logger.log(1, {"loss": 1.0})
    logger.close()
    assert not (tmp_path / "rank1").exists()
