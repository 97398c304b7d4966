"""domain_gradient_cosine on a linear model whose gradients are computed by hand."""

import math

import pytest
import torch
from torch import nn

from nexus_pretrain.analysis import domain_gradient_cosine


def make_model():
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0]]))
    return model


def loss_fn(model, batch):
    x, y = batch
    return 0.5 * (model(x).squeeze(-1) - y).pow(2).sum()


# gradient of 1/2 (w.x - y)^2 is (w.x - y) x with w = (1, 0):
BATCHES = {
    "web": (torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)),   # (1, 0)
    "math": (torch.tensor([[0.0, 1.0]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)),  # (0, -1)
    "code": (torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([-2.0], dtype=torch.float64)),  # (3, 3)
}


def test_cosines_match_hand_computed_values():
    model = make_model()
    model.weight.grad = torch.full_like(model.weight, 7.0)
    before = model.weight.detach().clone()
    result = domain_gradient_cosine(model, loss_fn, BATCHES)
    expected = {"cos/web-math": 0.0, "cos/web-code": 1 / math.sqrt(2), "cos/math-code": -1 / math.sqrt(2)}
    expected["cos/mean"] = sum(expected.values()) / 3
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert torch.equal(model.weight.grad, torch.full_like(model.weight, 7.0))  # .grad untouched
    assert torch.equal(model.weight.detach(), before)


def test_gradient_is_flattened_over_all_parameters():
    model = nn.Sequential(nn.Linear(1, 1, bias=True)).double()
    with torch.no_grad():
        model[0].weight.fill_(0.0)
        model[0].bias.fill_(0.0)
    batches = {  # gradient (d/dw, d/db) = (-y x, -y)
        "a": (torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)),   # (-1, -1)
        "b": (torch.tensor([[-1.0]], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)),  # (1, -1)
    }
    assert domain_gradient_cosine(model, loss_fn, batches)["cos/a-b"] == pytest.approx(0.0, abs=1e-12)


def test_needs_two_domains():
    with pytest.raises(ValueError, match="batches"):
        domain_gradient_cosine(make_model(), loss_fn, {"web": BATCHES["web"]})


def test_accumulated_micro_batches_give_the_mean_gradient():
    """With accumulate, a domain's gradient is the mean of its micro-batches' (one graph in memory at a time):
    mix = mean((1, 0), (0, -1)) = (0.5, -0.5), orthogonal to code's (3, 3), 45 degrees from web's (1, 0)."""
    result = domain_gradient_cosine(make_model(), loss_fn, {
        "mix": [BATCHES["web"], BATCHES["math"]], "code": [BATCHES["code"]], "web": [BATCHES["web"]]}, accumulate=True)
    assert result["cos/mix-code"] == pytest.approx(0.0, abs=1e-7)
    assert result["cos/mix-web"] == pytest.approx(1 / math.sqrt(2))
    assert result["cos/code-web"] == pytest.approx(1 / math.sqrt(2))
