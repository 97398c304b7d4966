"""Nexus against the paper's pseudo-code (Alg. 3) and against closed forms on constant gradients."""

import copy

import pytest
import torch
from torch import nn

from nexus_pretrain.config import OptimConfig
from nexus_pretrain.optim import Nexus
from nexus_pretrain.optim.build import build_outer

K = 4  # micro-batches per step, one per data source
GAMMA = 0.05


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(5, 12)
        self.mid = nn.Linear(12, 12)
        self.output = nn.Linear(12, 2)

    def forward(self, x):
        return self.output(torch.tanh(self.mid(torch.tanh(self.hidden(x)))))


def make_model(seed=0):
    torch.manual_seed(seed)
    return Regressor().double()


def source_batches(steps, seed=1):
    """Each micro-batch comes from a different source: its own linear target map plus noise."""
    gen = torch.Generator().manual_seed(seed)
    maps = [torch.randn(5, 2, generator=gen, dtype=torch.float64) for _ in range(K)]
    return [
        [(x, x @ maps[k] + 0.1 * torch.randn(6, 2, generator=gen, dtype=torch.float64))
         for k in range(K) for x in [torch.randn(6, 5, generator=gen, dtype=torch.float64)]]
        for _ in range(steps)
    ]


def loss_fn(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def reference_alg3(model, outer, windows, gamma):
    """Alg. 3 verbatim: clone, NSGD steps on the clone, outer step with grad = -(inner - model)."""
    for window in windows:
        inner = copy.deepcopy(model)
        for batch in window:
            grads = torch.autograd.grad(loss_fn(inner, batch) / len(window), list(inner.parameters()))
            norm = torch.sqrt(sum((g * g).sum() for g in grads))
            with torch.no_grad():
                for p, g in zip(inner.parameters(), grads):
                    p -= gamma * g / norm
        with torch.no_grad():
            for p, q in zip(model.parameters(), inner.parameters()):
                p.grad = -(q - p)
        outer.step()
        outer.zero_grad(set_to_none=True)


def run_nexus(model, opt, windows):
    metrics = []
    for window in windows:
        for batch in window:
            (loss_fn(model, batch) / len(window)).backward()
            opt.micro_step()
        metrics.append(opt.step())
        opt.zero_grad()
    return metrics


@pytest.mark.parametrize("outer_name", ["adamw", "muon"])
def test_nexus_matches_alg3_reference(outer_name):
    cfg = OptimConfig(name="nexus", outer=outer_name, lr=1e-2, weight_decay=0.1, max_grad_norm=0.0, eps=1e-8)
    windows = source_batches(steps=5)
    ref_model, model = make_model(), make_model()
    reference_alg3(ref_model, build_outer(cfg, ref_model, outer_name), windows, GAMMA)
    run_nexus(model, Nexus(build_outer(cfg, model, outer_name), GAMMA), windows)
    start = make_model()
    for p, q, p0 in zip(model.parameters(), ref_model.parameters(), start.parameters()):
        assert (p - p0).abs().max() > 1e-4  # the run moved the parameters
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_compiled_inner_step_matches_alg3_reference():
    """trainer.compile also compiles the inner step (one set of fused kernels instead of a launch per
    parameter); it must take the same steps."""
    cfg = OptimConfig(name="nexus", lr=1e-2, weight_decay=0.1, max_grad_norm=0.0, eps=1e-8)
    windows = source_batches(steps=3)
    ref_model, model = make_model(), make_model()
    reference_alg3(ref_model, build_outer(cfg, ref_model, "adamw"), windows, GAMMA)
    run_nexus(model, Nexus(build_outer(cfg, model, "adamw"), GAMMA, compile_inner_step=True), windows)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    torch._dynamo.reset()


class LinearLoss(nn.Module):
    """L_m(theta) = c_m . theta over two parameter tensors: gradients independent of theta."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.randn(3, 2, generator=gen, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(4, generator=gen, dtype=torch.float64))

    def forward(self, c):
        cw, cb = c
        return (cw * self.w).sum() + (cb * self.b).sum()


def constant_directions(seed=4):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(3, 2, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64))
            for _ in range(3)]


def test_constant_gradients_reduce_to_adamw_on_normalized_gradient():
    """pseudo-grad = gamma * sum_m c_m / ||c_m|| (global norm over both tensors); AdamW on a constant
    gradient P moves each coordinate by lr_t * P / (|P| + eps) after decoupled decay by (1 - lr_t wd)."""
    model, cs = LinearLoss(), constant_directions()
    lr, wd, eps, mults = 1e-2, 0.1, 1e-8, [1.0, 0.5, 0.25, 1.0, 0.75]
    opt = Nexus(torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd, eps=eps), GAMMA)
    expected = [model.w.detach().clone(), model.b.detach().clone()]
    norms = [torch.sqrt((cw * cw).sum() + (cb * cb).sum()) for cw, cb in cs]
    pseudo = [GAMMA * sum(c[i] / n for c, n in zip(cs, norms)) for i in range(2)]
    for mult in mults:
        opt.set_lr_multiplier(mult)
        for c in cs:
            (model(c) / len(cs)).backward()
            opt.micro_step()
        metrics = opt.step()
        opt.zero_grad()
        lr_t = lr * mult
        expected = [e * (1 - lr_t * wd) - lr_t * P / (P.abs() + eps) for e, P in zip(expected, pseudo)]
        pseudo_norm = torch.sqrt(sum((P * P).sum() for P in pseudo))
        torch.testing.assert_close(metrics["grad_norm"], pseudo_norm, rtol=1e-12, atol=0)
        torch.testing.assert_close(metrics["mean_inner_grad_norm"], sum(norms) / len(cs) / len(cs), rtol=1e-12, atol=0)
    torch.testing.assert_close(model.w.detach(), expected[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(model.b.detach(), expected[1], rtol=0, atol=1e-12)


def pseudo_gradient(variant, cs, gamma=GAMMA, **kwargs):
    model = LinearLoss()
    start = [p.detach().clone() for p in model.parameters()]
    opt = Nexus(torch.optim.SGD(model.parameters(), lr=0.0), gamma, variant=variant, **kwargs)
    for c in cs:
        model(c).backward()
        opt.micro_step()
    metrics = opt.step()
    for p, p0 in zip(model.parameters(), start):
        assert torch.equal(p.detach(), p0)  # restored to the anchor (SGD with lr 0 leaves it there)
    return [p.grad.clone() for p in model.parameters()], metrics


def test_variants_on_constant_gradients():
    cs = constant_directions()
    total = [sum(c[i] for c in cs) for i in range(2)]
    total_norm = torch.sqrt(sum((t * t).sum() for t in total))
    dot, _ = pseudo_gradient("nexus_dot", cs)
    for g, t in zip(dot, total):
        torch.testing.assert_close(g, GAMMA * t, rtol=1e-12, atol=1e-15)
    nsgd, metrics = pseudo_gradient("nsgd", cs)
    for g, t in zip(nsgd, total):
        torch.testing.assert_close(g, GAMMA * t / total_norm, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(metrics["mean_inner_grad_norm"], total_norm, rtol=1e-12, atol=0)
    # With theta-independent gradients the random control's pseudo-gradient equals Nexus's.
    nexus, _ = pseudo_gradient("nexus", cs)
    random, _ = pseudo_gradient("random", cs, seed=5)
    for a, b in zip(nexus, random):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_clipping_applies_to_pseudo_gradient():
    cs = constant_directions()
    model = LinearLoss()
    start = [p.detach().clone() for p in model.parameters()]
    opt = Nexus(torch.optim.SGD(model.parameters(), lr=1.0), GAMMA, max_grad_norm=0.01)
    for c in cs:
        model(c).backward()
        opt.micro_step()
    metrics = opt.step()
    moved = torch.sqrt(sum(((p - p0) ** 2).sum() for p, p0 in zip(model.parameters(), start)))
    torch.testing.assert_close(moved.detach(), torch.tensor(0.01, dtype=torch.float64), rtol=1e-4, atol=0)  # clip adds 1e-6 to the norm
    assert metrics["grad_norm"] > 0.05  # pre-clip norm is reported


def test_inner_lr_follows_schedule_only_when_asked():
    cs = constant_directions()
    for follows, expected in ((False, GAMMA), (True, GAMMA * 0.5)):
        model = LinearLoss()
        opt = Nexus(torch.optim.SGD(model.parameters(), lr=0.0), GAMMA, inner_lr_follows_schedule=follows)
        opt.set_lr_multiplier(0.5)
        assert opt.outer.param_groups[0]["lr"] == 0.0
        for c in cs[:1]:
            model(c).backward()
            opt.micro_step()
        torch.testing.assert_close(opt.step()["grad_norm"], torch.tensor(expected, dtype=torch.float64))


def test_bad_arguments_and_call_order():
    model = LinearLoss()
    outer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="variant"):
        Nexus(outer, GAMMA, variant="momentum")
    with pytest.raises(ValueError, match="inner_lr"):
        Nexus(outer, 0.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        Nexus(outer, GAMMA, max_grad_norm=-1.0)
    opt = Nexus(outer, GAMMA)
    with pytest.raises(RuntimeError, match="micro_step"):
        opt.step()
    with pytest.raises(RuntimeError, match="backward"):
        opt.micro_step()


def test_micro_step_drops_gradients_and_moves_by_gamma():
    model, cs = LinearLoss(), constant_directions()
    opt = Nexus(torch.optim.SGD(model.parameters(), lr=0.0), GAMMA)
    start = [p.detach().clone() for p in model.parameters()]
    model(cs[0]).backward()
    opt.micro_step()
    assert all(p.grad is None for p in model.parameters())
    moved = torch.sqrt(sum(((p - p0) ** 2).sum() for p, p0 in zip(model.parameters(), start)))
    torch.testing.assert_close(moved.detach(), torch.tensor(GAMMA, dtype=torch.float64), rtol=1e-12, atol=0)
