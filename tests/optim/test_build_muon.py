"""build_optimizer's parameter groups, and the Muon(+AdamW) outer optimizer."""

import copy
import math

import pytest
import torch
from torch import nn

from nexus_pretrain.config import OptimConfig
from nexus_pretrain.model.llama import Llama, ModelArgs
from nexus_pretrain.optim import Accumulate, Nexus, build_optimizer, scale_learning_rates
from nexus_pretrain.optim.muon import Muon, MuonAdamW, zeropower_via_newtonschulz

HAS_TORCH_MUON = hasattr(torch.optim, "Muon")


def tiny_llama(tie=False):
    torch.manual_seed(0)
    args = ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48, vocab_size=64, max_seq_len=16,
                     tie_embeddings=tie, attention="sdpa")
    return Llama(args)


def names_of(model, params):
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_adamw_groups_decay_only_matrices():
    model = tiny_llama()
    opt = build_optimizer(OptimConfig(name="adamw", weight_decay=0.2), model)
    assert isinstance(opt, Accumulate) and isinstance(opt.outer, torch.optim.AdamW)
    decay = {n for g in opt.outer.param_groups if g["weight_decay"] == 0.2 for n in names_of(model, g["params"])}
    none = {n for g in opt.outer.param_groups if g["weight_decay"] == 0.0 for n in names_of(model, g["params"])}
    assert decay == {n for n, p in model.named_parameters() if p.ndim >= 2}
    assert none == {n for n, p in model.named_parameters() if "norm" in n}
    assert opt.outer.defaults["fused"] is False  # CPU parameters
    assert opt.outer.defaults["betas"] == (0.9, 0.95) and opt.outer.defaults["eps"] == 1e-10


def test_muon_split_by_name_and_fused_projection_blocks():
    model = tiny_llama()
    opt = build_optimizer(OptimConfig(name="muon", lr=1e-3, muon_lr=2e-3, weight_decay=0.1), model)
    outer = opt.outer
    assert isinstance(outer, MuonAdamW)
    muon_names = names_of(model, [p for g in outer.muon.param_groups for p in g["params"]])
    assert muon_names == {f"layers.{i}.{m}.weight" for i in range(2)
                          for m in ("attention.wqkv", "attention.wo", "feed_forward.w13", "feed_forward.w2")}
    adamw_names = names_of(model, [p for g in outer.adamw.param_groups for p in g["params"]])
    assert adamw_names == {n for n, _ in model.named_parameters()} - muon_names
    assert {"tok_embeddings.weight", "output.weight", "norm.weight"} <= adamw_names
    assert all(g["lr"] == 2e-3 and g["weight_decay"] == 0.1 for g in outer.muon.param_groups)
    assert {g["lr"] for g in outer.adamw.param_groups} == {1e-3}
    layer = model.layers[0]
    assert outer.muon.row_splits[id(layer.attention.wqkv.weight)] == (32, 16, 16)  # q: 4 heads x 8, k, v: 2 x 8
    assert outer.muon.row_splits[id(layer.feed_forward.w13.weight)] == (48, 48)
    assert id(layer.attention.wo.weight) not in outer.muon.row_splits
    assert len(outer.param_groups) == len(outer.muon.param_groups) + len(outer.adamw.param_groups)


def test_tied_embeddings_are_optimized_once_by_adamw():
    model = tiny_llama(tie=True)
    outer = build_optimizer(OptimConfig(name="muon"), model).outer
    params = [p for g in outer.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(model.parameters()))
    assert "tok_embeddings.weight" in names_of(model, [p for g in outer.adamw.param_groups for p in g["params"]])


def test_build_nexus_and_bad_names():
    model = tiny_llama()
    cfg = OptimConfig(name="nexus", outer="muon", inner_lr=0.02, variant="random", offload_anchor=True,
                      max_grad_norm=0.5, inner_lr_follows_schedule=True)
    opt = build_optimizer(cfg, model, seed=3)
    assert isinstance(opt, Nexus) and isinstance(opt.outer, MuonAdamW)
    assert (opt.variant, opt.inner_lr, opt.offload_anchor, opt.max_grad_norm) == ("random", 0.02, True, 0.5)
    assert opt.inner_lr_follows_schedule
    with pytest.raises(ValueError, match="optim.name"):
        build_optimizer(OptimConfig(name="sgd"), model)
    with pytest.raises(ValueError, match="optim.outer"):
        build_optimizer(OptimConfig(name="nexus", outer="lion"), model)
    with pytest.raises(ValueError, match="variant"):
        build_optimizer(OptimConfig(name="nexus", variant="momentum"), model)


def random_matrices(shapes, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=gen, dtype=dtype) for s in shapes]


def run_muon(opt, params, grads_per_step):
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.skipif(not HAS_TORCH_MUON, reason="torch.optim.Muon not in this torch")
@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
def test_muon_equals_torch_muon(adjust):
    shapes = [(24, 8), (8, 24), (16, 16)]
    steps = [random_matrices(shapes, seed=s) for s in range(3)]
    ours = [nn.Parameter(w) for w in random_matrices(shapes, seed=9)]
    theirs = [nn.Parameter(w.detach().clone()) for w in ours]
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.9, ns_steps=5, adjust_lr_fn=adjust)
    a = run_muon(Muon(ours, **kw), ours, steps)
    b = run_muon(torch.optim.Muon(theirs, **kw), theirs, steps)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.skipif(not HAS_TORCH_MUON, reason="torch.optim.Muon not in this torch")
def test_row_split_muon_equals_torch_muon_on_separate_projections():
    splits = (32, 16, 16)
    steps = [random_matrices([(64, 32)], seed=s) for s in range(3)]
    fused = nn.Parameter(random_matrices([(64, 32)], seed=9)[0])
    parts = [nn.Parameter(b.detach().clone()) for b in fused.split(splits)]
    kw = dict(lr=0.02, weight_decay=0.1, momentum=0.95, adjust_lr_fn="match_rms_adamw")
    (a,) = run_muon(Muon([fused], row_splits={fused: splits}, **kw), [fused], steps)
    b = run_muon(torch.optim.Muon(parts, **kw), parts, [list(g.split(splits)) for (g,) in steps])
    assert torch.equal(a, torch.cat(b))
    one, two = (nn.Parameter(fused.detach().clone()) for _ in range(2))
    (split_step,) = run_muon(Muon([one], row_splits={one: splits}, **kw), [one], steps[:1])
    (fused_step,) = run_muon(Muon([two], **kw), [two], steps[:1])
    assert (split_step - fused_step).abs().max() > 1e-3  # splitting changes the update


def reference_newton_schulz(g, steps=5):
    """Textbook form in float64: X <- a X + (b A + c A^2) X with A = X X^T, X normalized, wide side last."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def test_muon_step_matches_reference_computation():
    shapes = [(24, 8), (8, 24)]
    steps = [random_matrices(shapes, seed=s) for s in range(3)]
    params = [nn.Parameter(w) for w in random_matrices(shapes, seed=9)]
    lr, wd, mu = 0.02, 0.1, 0.95
    ref = [p.detach().double().clone() for p in params]
    bufs = [torch.zeros_like(r) for r in ref]
    for grads in steps:
        for i, g in enumerate(grads):
            bufs[i] = mu * bufs[i] + (1 - mu) * g.double()
            update = (1 - mu) * g.double() + mu * bufs[i]  # Nesterov, in torch's lerp convention
            ref[i] = ref[i] * (1 - lr * wd) - lr * 0.2 * math.sqrt(max(ref[i].shape)) * reference_newton_schulz(update)
    got = run_muon(Muon(params, lr=lr, weight_decay=wd, momentum=mu), params, steps)
    for x, r, w0 in zip(got, ref, random_matrices(shapes, seed=9)):
        step_size = (r - w0.double()).abs().max()
        assert (x.double() - r).abs().max() < 0.03 * step_size  # bf16 Newton-Schulz vs float64


def test_newton_schulz_output_is_nearly_orthogonal():
    for shape in [(48, 16), (16, 48)]:
        (g,) = random_matrices([shape], seed=2)
        s = torch.linalg.svdvals(zeropower_via_newtonschulz(g, 5).float())
        assert s.min() > 0.6 and s.max() < 1.25, s


def test_muon_adamw_state_dict_round_trip_is_bit_exact():
    model = tiny_llama()
    tokens = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))

    def steps(m, opt, n):
        for _ in range(n):
            logits = m(tokens[:, :-1])
            nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten()).backward()
            opt.step()
            opt.zero_grad()

    cfg = OptimConfig(name="muon", lr=1e-2, weight_decay=0.1)
    opt = build_optimizer(cfg, model)
    steps(model, opt, 2)
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    assert set(saved[1]["outer"]) == {"muon", "adamw"}
    steps(model, opt, 2)
    model2 = tiny_llama()
    model2.load_state_dict(saved[0])
    opt2 = build_optimizer(cfg, model2)
    opt2.load_state_dict(saved[1])
    steps(model2, opt2, 2)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    scale_learning_rates(opt2.outer, 0.5)  # after load_state_dict the live groups still get scaled
    assert all(g["lr"] == 5e-3 for g in opt2.outer.muon.param_groups + opt2.outer.adamw.param_groups)
