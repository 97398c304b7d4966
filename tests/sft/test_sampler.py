"""The SFT sampler: a pure function of (seed, step, pass, rank, layout), epoch by epoch."""

import numpy as np
import torch

from nexus_pretrain.data.layout import batch_layout
from nexus_pretrain.data.loader import MicroBatchLoader
from nexus_pretrain.sft.sampler import SFTExamples, SFTSampler


def _examples(n=10, seq_len=8):
    rng = np.random.default_rng(0)
    ids = [np.arange(i * 100, i * 100 + rng.integers(3, seq_len + 2)) for i in range(n)]  # example i: tokens i*100...
    response = [np.arange(len(x)) >= 2 for x in ids]
    return SFTExamples(ids, response, seq_len, pad_id=-1)


def _row_examples(batch):
    return [int(x) // 100 for x in batch.inputs[:, 0]]


def test_same_inputs_same_batches_and_every_example_once_per_epoch():
    a, b = SFTSampler(_examples(), seed=3), SFTSampler(_examples(), seed=3)
    four, two = batch_layout(4, 2, 1, 2), batch_layout(2, 2, 1, 1)
    for step in range(4):
        for micro in range(2):
            x, y = a.micro_batch(step, four, micro), b.micro_batch(step, four, micro)
            assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)
    seen = [e for step in range(5) for micro in range(2) for e in _row_examples(a.micro_batch(step, two, micro))]
    assert sorted(seen) == list(range(10))  # 5 steps x 2 sequences = one epoch of 10 examples
    other, whole = SFTSampler(_examples(), seed=4), batch_layout(2, 1, 1, 2)
    assert [_row_examples(other.micro_batch(s, whole, 0)) for s in range(5)] != \
        [_row_examples(a.micro_batch(s, whole, 0)) for s in range(5)]


def test_ranks_take_slices_of_the_same_global_batch():
    sampler = SFTSampler(_examples(), seed=0)
    for step in range(3):
        one = [e for m in range(2) for e in _row_examples(sampler.micro_batch(step, batch_layout(8, 2, 1, 4), m))]
        two = [e for m in range(2) for r in range(2)
               for e in _row_examples(sampler.micro_batch(step, batch_layout(8, 2, 2, 2), m, r))]
        assert one == two


def test_resuming_the_loader_mid_run_gives_the_same_batches():
    sampler = SFTSampler(_examples(), seed=1)
    layout = batch_layout(6, 2, 1, 3)
    straight = MicroBatchLoader(sampler, layout, 0, stop_step=6)
    expected = [straight.get(s, m) for s in range(6) for m in range(2)]
    resumed = MicroBatchLoader(sampler, layout, 0, stop_step=6)
    got = [resumed.get(s, m) for s in range(3, 6) for m in range(2)]
    for x, y in zip(expected[6:], got):
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)


def test_an_epoch_of_examples_is_one_epoch_of_training_tokens():
    """The trainer counts a row as seq_len tokens; one pass over the 10 examples is epochs/sft = 1."""
    from nexus_pretrain.data.epochs import epochs

    sampler = SFTSampler(_examples(n=10, seq_len=8), seed=0)
    assert epochs({d: 10 * 8 for d in sampler.domains}, sampler.train_tokens) == {d: 1.0 for d in sampler.domains}
