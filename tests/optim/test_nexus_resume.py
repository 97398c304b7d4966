"""Nexus state_dict round trips: resuming (at a step boundary or mid-window) is bit-exact on CPU."""

import copy

import pytest
import torch
from torch import nn

from nexus_pretrain.config import OptimConfig
from nexus_pretrain.optim import Nexus
from nexus_pretrain.optim.build import build_outer

K = 3


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).double()


def batch(step, micro):
    gen = torch.Generator().manual_seed(1000 * step + micro)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    return x, torch.sin(3 * x[:, :2]) + 0.1 * micro


def make_opt(model, variant, offload, outer):
    cfg = OptimConfig(name="nexus", outer=outer, lr=1e-2, weight_decay=0.1, max_grad_norm=1.0)
    return Nexus(build_outer(cfg, model, outer), 0.05, variant=variant, offload_anchor=offload,
                 max_grad_norm=1.0, inner_lr_follows_schedule=True, seed=11)


def micro(model, opt, step, m):
    x, y = batch(step, m)
    (nn.functional.mse_loss(model(x), y) / K).backward()
    opt.micro_step()


def finish(opt, step):
    metrics = opt.step()
    opt.zero_grad()
    return metrics


def train(model, opt, steps, start_micro=0):
    for step in steps:
        opt.set_lr_multiplier(1.0 / (1 + step))
        for m in range(start_micro, K):
            micro(model, opt, step, m)
        start_micro = 0
        finish(opt, step)


def snapshot(model, opt):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())


def restored(variant, offload, outer, saved):
    model = make_model()
    model.load_state_dict(saved[0])
    opt = make_opt(model, variant, offload, outer)
    opt.load_state_dict(saved[1])
    return model, opt


def assert_identical(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("variant,offload,outer", [
    ("nexus", False, "adamw"), ("nexus", True, "adamw"), ("random", False, "adamw"), ("random", True, "adamw"),
    ("nexus_dot", False, "adamw"), ("nsgd", False, "adamw"), ("nexus", False, "muon"),
])
def test_resume_at_step_boundary_is_bit_exact(variant, offload, outer):
    model = make_model()
    opt = make_opt(model, variant, offload, outer)
    train(model, opt, range(3))
    saved = snapshot(model, opt)
    assert "window" not in saved[1]  # the anchor equals the parameters between steps
    train(model, opt, range(3, 6))
    model2, opt2 = restored(variant, offload, outer, saved)
    train(model2, opt2, range(3, 6))
    assert_identical(model, model2)
    assert not torch.equal(saved[0]["0.weight"], model.state_dict()["0.weight"])


@pytest.mark.parametrize("variant,offload", [("nexus", False), ("nexus", True), ("random", False), ("random", True)])
def test_resume_mid_window_is_bit_exact(variant, offload):
    model = make_model()
    opt = make_opt(model, variant, offload, "adamw")
    train(model, opt, range(2))
    opt.set_lr_multiplier(1.0 / 3)
    micro(model, opt, 2, 0)
    saved = snapshot(model, opt)
    assert saved[1]["window"]["micro_steps"] == 1
    train(model, opt, range(2, 4), start_micro=1)
    model2, opt2 = restored(variant, offload, "adamw", saved)
    train(model2, opt2, range(2, 4), start_micro=1)
    assert_identical(model, model2)


def test_offloaded_anchor_lives_on_cpu_and_matches_on_device_anchor():
    runs = []
    for offload in (False, True):
        model = make_model()
        opt = make_opt(model, "nexus", offload, "adamw")
        train(model, opt, range(2))
        runs.append(model)
        assert all(a.device.type == "cpu" for a in opt._anchor)
        assert all(a.is_pinned() == (offload and torch.cuda.is_available()) for a in opt._anchor)
    assert_identical(*runs)


def test_bf16_parameters_use_fp32_anchor_and_restore_exactly():
    torch.manual_seed(0)
    model = nn.Linear(16, 16).bfloat16()
    model.weight.data.mul_(64)  # large weights: the inner steps round in bf16 but the anchor must not
    start = [p.detach().clone() for p in model.parameters()]
    opt = Nexus(torch.optim.SGD(model.parameters(), lr=0.0), 1.0)
    x = torch.randn(4, 16).bfloat16()
    for _ in range(2):
        model(x).float().pow(2).mean().backward()
        opt.micro_step()
    inner = [p.detach().clone() for p in model.parameters()]
    assert all(a.dtype == torch.float32 for a in opt._anchor)
    opt.step()
    for p, p0, pi in zip(model.parameters(), start, inner):
        assert torch.equal(p.detach(), p0)
        assert p.grad.dtype == torch.bfloat16
        assert torch.equal(p.grad, (p0.float() - pi.float()).bfloat16())
