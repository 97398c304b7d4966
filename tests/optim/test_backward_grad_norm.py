"""The backward-accumulated global gradient norm equals the norm taken after backward, whether the
norms are taken per gradient as it arrives (batch 0), in batches (5 elements), or all at total()."""

import pytest
import torch
from torch import nn

from nexus_pretrain.optim.grad_norm import BackwardGradNorm

BATCHES = pytest.mark.parametrize("batch", [0, 5, 10**9])


@BATCHES
def test_equals_total_norm_after_backward_and_resets(batch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    tracker = BackwardGradNorm(list(model.parameters()), batch)
    model(torch.randn(4, 5)).square().sum().backward()
    expected = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    torch.testing.assert_close(tracker.total(), expected)
    tracker.reset()
    assert float(tracker.total()) == 0.0


@BATCHES
def test_two_backwards_give_the_norm_of_the_accumulated_gradient(batch):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    tracker = BackwardGradNorm(list(model.parameters()), batch)
    for _ in range(2):
        model(torch.randn(4, 3)).sum().backward()
    expected = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    torch.testing.assert_close(tracker.total(), expected)


@BATCHES
def test_parameters_without_gradient_count_as_zero_and_remove_unhooks(batch):
    a, b = nn.Parameter(torch.tensor([3.0])), nn.Parameter(torch.tensor([1.0]))
    tracker = BackwardGradNorm([a, b], batch)
    (4.0 * a).sum().backward()  # only a gets a gradient: |4| = 4
    assert float(tracker.total()) == 4.0
    tracker.reset()
    tracker.remove()
    (2.0 * b).sum().backward()
    assert float(tracker.total()) == 0.0


def test_a_discarded_tracker_and_its_nexus_free_their_parameters():
    """The hooks live on the parameters: holding the tracker from them kept every parameter of every
    Nexus ever built alive (a 1B model's 5 GiB per optimizer in one process: nexus-bench, sweeps, tests)."""
    import gc
    import weakref

    from nexus_pretrain.optim.nexus import Nexus

    def built_and_dropped(make):
        model = nn.Linear(3, 2)
        owner = make(model)
        model(torch.randn(4, 3)).sum().backward()
        alive = weakref.ref(model.weight)
        del model, owner
        gc.collect()
        return alive() is None

    assert built_and_dropped(lambda m: BackwardGradNorm(list(m.parameters())))
    assert built_and_dropped(lambda m: Nexus(torch.optim.SGD(m.parameters(), lr=0.1), inner_lr=0.01))


def _inner_batch(model, tracker, passes):
    """``passes`` backward passes accumulated into one gradient; returns (tracked norm, norm after backward)."""
    for _ in range(passes):
        model(torch.randn(4, 3)).sum().backward()
    expected = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    total = tracker.total()
    tracker.reset()
    model.zero_grad(set_to_none=True)
    return total, expected


@BATCHES
def test_an_inner_batch_of_several_passes_takes_each_norm_once_after_the_first(batch, monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    tracker = BackwardGradNorm(list(model.parameters()), batch)
    written = []
    write = tracker._write
    monkeypatch.setattr(tracker, "_write", lambda indices, grads: written.extend(indices) or write(indices, grads))
    torch.testing.assert_close(*_inner_batch(model, tracker, 4))
    # the first inner batch (count unknown, taken as 1): each norm at the first pass and again at total()
    assert tracker.passes == 4 and sorted(written) == [0, 0, 1, 1]
    written.clear()
    torch.testing.assert_close(*_inner_batch(model, tracker, 4))
    assert sorted(written) == [0, 1]  # then each gradient's norm once, at its last pass


@BATCHES
def test_inner_batches_of_another_size_than_counted_still_give_the_exact_norm(batch):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    tracker = BackwardGradNorm(list(model.parameters()), batch)
    for passes in (2, 3, 1, 4, 2):  # more passes than counted (norms taken early are retaken), then fewer
        torch.testing.assert_close(*_inner_batch(model, tracker, passes))
        assert tracker.passes == passes
