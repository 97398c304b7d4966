"""The backward-accumulated global gradient norm equals the norm taken after backward."""

import torch
from torch import nn

from nexus_pretrain.optim.grad_norm import BackwardGradNorm


def test_equals_total_norm_after_backward_and_resets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    tracker = BackwardGradNorm(list(model.parameters()))
    model(torch.randn(4, 5)).square().sum().backward()
    expected = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    torch.testing.assert_close(tracker.total(), expected)
    tracker.reset()
    assert float(tracker.total()) == 0.0


def test_two_backwards_give_the_norm_of_the_accumulated_gradient():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    tracker = BackwardGradNorm(list(model.parameters()))
    for _ in range(2):
        model(torch.randn(4, 3)).sum().backward()
    expected = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    torch.testing.assert_close(tracker.total(), expected)


def test_parameters_without_gradient_count_as_zero_and_remove_unhooks():
    a, b = nn.Parameter(torch.tensor([3.0])), nn.Parameter(torch.tensor([1.0]))
    tracker = BackwardGradNorm([a, b])
    (4.0 * a).sum().backward()  # only a gets a gradient: |4| = 4
    assert float(tracker.total()) == 4.0
    tracker.reset()
    tracker.remove()
    (2.0 * b).sum().backward()
    assert float(tracker.total()) == 0.0
