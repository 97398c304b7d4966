"""Checkpoint atomicity and rotation; metric sinks."""

import json
from types import SimpleNamespace

import pytest
import torch
from torch.distributed.checkpoint.api import CheckpointException

from nexus_pretrain.config import BackendConfig, OptimConfig
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.backends.single import SingleDevice
from nexus_pretrain.train.metrics import MetricsLogger


def _model_and_optimizer(seed: int, name: str = "adamw"):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    cfg = OptimConfig(name=name, lr=0.1, inner_lr=0.05)
    return model, build_optimizer(cfg, model)


def _train(model, optimizer, steps: int, micro: int = 2):
    gen = torch.Generator().manual_seed(7)
    for _ in range(steps):
        for _ in range(micro):
            (model(torch.randn(3, 4, generator=gen)).square().mean() / micro).backward()
            optimizer.micro_step()
        optimizer.step()
        optimizer.zero_grad()


def _backend(asynchronous: bool = False):
    return SingleDevice(BackendConfig(device="cpu", async_checkpoint=asynchronous))


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("name", ["adamw", "nexus", "muon"])
def test_save_load_restores_model_optimizer_and_meta(tmp_path, name, asynchronous):
    model, optimizer = _model_and_optimizer(0, name)
    _train(model, optimizer, 3)
    checkpointer = ckpt.Checkpointer(tmp_path, _backend(asynchronous), keep_last=2)
    path = checkpointer.save(3, model, optimizer, {"domain_tokens": {"web": 12}})
    checkpointer.wait()
    assert path == ckpt.latest_checkpoint(tmp_path) and path.name == "step_00000003"
    assert ckpt.read_meta(path) == {"domain_tokens": {"web": 12}, "step": 3, "world_size": 1, "backend": "single"}
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, optimizer, 2)  # the run continues from the checkpoint ...

    fresh_model, fresh_optimizer = _model_and_optimizer(1, name)  # ... and so does a fresh process
    meta = ckpt.Checkpointer(tmp_path, _backend(), keep_last=2).load(path, fresh_model, fresh_optimizer)
    assert meta["step"] == 3
    for key, value in fresh_model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    _train(fresh_model, fresh_optimizer, 2)
    for a, b in zip(model.parameters(), fresh_model.parameters()):
        assert torch.equal(a, b)


def test_rotation_keeps_newest(tmp_path):
    model, optimizer = _model_and_optimizer(0)
    checkpointer = ckpt.Checkpointer(tmp_path, _backend(), keep_last=2)
    for step in (1, 2, 3, 4):
        checkpointer.save(step, model, optimizer, {})
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004"]
    assert ckpt.read_meta(ckpt.latest_checkpoint(tmp_path))["step"] == 4


def test_crash_mid_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    model, optimizer = _model_and_optimizer(0)
    checkpointer = ckpt.Checkpointer(tmp_path, _backend(), keep_last=3)
    checkpointer.save(5, model, optimizer, {})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    _train(model, optimizer, 1)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)  # DCP serializes non-tensor entries with torch.save
    with pytest.raises(CheckpointException):  # DCP's wrapper of the OSError (a BaseException)
        checkpointer.save(6, model, optimizer, {})
    monkeypatch.undo()
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "step_00000005"
    assert (ckpt.checkpoint_root(tmp_path) / ".tmp_step_00000006").is_dir()  # never under a final name
    fresh_model, fresh_optimizer = _model_and_optimizer(1)
    checkpointer.load(latest, fresh_model, fresh_optimizer)
    for key, value in fresh_model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    checkpointer.save(6, model, optimizer, {})  # the leftover temporary folder is replaced
    assert ckpt.latest_checkpoint(tmp_path).name == "step_00000006"


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
