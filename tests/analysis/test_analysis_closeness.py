"""Parameter closeness and the loss-landscape slice, checked against hand computations."""

import pytest
import torch

from nexus_pretrain.analysis import landscape as ls
from nexus_pretrain.analysis.closeness import GDSettings, parameter_closeness
from nexus_pretrain.analysis.sources import flat_parameters, gold_loss, mixture_loss


def _gradient(model, sequences):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(gold_loss(model, sequences, 2), params)]).double()


def test_zero_steps_is_zero_distance(final, gsm8k):
    before = flat_parameters(final.model)
    r = parameter_closeness(final.model, {"GSM8k": gsm8k}, GDSettings(steps=0, batch_size=2))["GSM8k"]
    assert r["distance"] == 0.0 and r["relative"] == 0.0
    assert r["loss_before"] == r["loss_after"] and r["losses"] == [r["loss_before"]]
    assert r["train_norm"] == pytest.approx(float(before.double().norm()))
    assert torch.equal(flat_parameters(final.model), before)  # the checkpoint's model is untouched


def test_one_step_of_plain_gd_moves_lr_times_gradient_norm(final, gsm8k):
    g = _gradient(final.model, gsm8k)
    lr = 1e-2
    r = parameter_closeness(final.model, {"GSM8k": gsm8k}, GDSettings(steps=1, lr=lr, optimizer="sgd",
                                                                     batch_size=2))["GSM8k"]
    assert r["distance"] == pytest.approx(lr * float(g.norm()), rel=1e-4)
    assert r["loss_after"] < r["loss_before"]


def test_one_step_of_adamw_is_the_bias_corrected_sign_like_update(final, gsm8k):
    g = _gradient(final.model, gsm8k)
    lr, eps = 2e-5, 1e-8
    # step 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps) (weight decay 0)
    expected = lr * float((g / (g.abs() + eps)).norm())
    r = parameter_closeness(final.model, {"GSM8k": gsm8k}, GDSettings(steps=1, lr=lr, batch_size=1))["GSM8k"]
    assert r["distance"] == pytest.approx(expected, rel=1e-4)


def test_landscape_grid_passes_through_both_minima(final, gsm8k, train_set):
    model = final.model
    theta_train = flat_parameters(model)
    r = parameter_closeness(model, {"GSM8k": gsm8k}, GDSettings(steps=3, lr=1e-3, batch_size=2), keep=True)["GSM8k"]
    theta_task = r["theta"]
    d1 = theta_task - theta_train
    d2 = ls.second_direction(model, d1, "random", seed=1)
    assert float(d1.double().dot(d2.double())) == pytest.approx(0.0, abs=1e-6 * float(d1.norm()) * float(d2.norm()))
    assert float(d2.norm()) == pytest.approx(float(d1.norm()), rel=1e-5)
    alphas, betas = ls.axis(-1, 2, 4, must=(0.0, 1.0)), ls.axis(-1, 1, 3, must=(0.0,))
    assert alphas.tolist() == [-1, 0, 1, 2] and betas.tolist() == [-1, 0, 1]
    grids = ls.loss_grid(model, theta_train, theta_task, d2, alphas, betas, train_set, {"GSM8k": gsm8k}, 2)
    assert grids["GSM8k"].shape == grids["train"].shape == (3, 4)
    i0, j0, j1 = 1, 1, 2
    with torch.no_grad():
        assert grids["train"][i0, j0] == pytest.approx(float(mixture_loss(model, train_set)), rel=1e-6)
        assert grids["GSM8k"][i0, j0] == pytest.approx(r["loss_before"], rel=1e-6)
        assert grids["GSM8k"][i0, j1] == pytest.approx(r["loss_after"], rel=1e-6)
    assert r["loss_after"] < r["loss_before"]
    assert torch.equal(flat_parameters(model), theta_train)  # restored


def test_filter_normalized_direction(final):
    model = final.model
    d1 = torch.randn(flat_parameters(model).numel())
    d2 = ls.second_direction(model, d1, "filter", seed=0)
    assert float(d1.double().dot(d2.double())) == pytest.approx(0.0, abs=1e-5 * float(d1.norm()) * float(d2.norm()))
    with pytest.raises(ValueError, match="direction"):
        ls.second_direction(model, d1, "pca")


def test_one_step_on_a_domain_target_chunked_over_windows(final, train_set):
    from nexus_pretrain.analysis.sources import domain_loss

    windows = train_set.batches["code"]  # 3 windows in micro-batches of 2 and 1: unequal chunks
    params = [p for p in final.model.parameters() if p.requires_grad]
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(domain_loss(final.model, windows), params)]).double()
    r = parameter_closeness(final.model, {"code": windows}, GDSettings(steps=1, lr=1e-2, optimizer="sgd"))["code"]
    assert r["distance"] == pytest.approx(1e-2 * float(g.norm()), rel=1e-4)
    assert r["examples"] == 3
