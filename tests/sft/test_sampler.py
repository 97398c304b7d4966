"""The SFT sampler: a pure function of (seed, step, micro, rank, world size), epoch by epoch."""

import numpy as np
import torch

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
    for step in range(4):
        for micro in range(2):
            x, y = a.micro_batch(step, micro, 2, 2), b.micro_batch(step, micro, 2, 2)
            assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)
    seen = [e for step in range(5) for micro in range(2) for e in _row_examples(a.micro_batch(step, micro, 2, 1))]
    assert sorted(seen) == list(range(10))  # 5 steps x 2 sequences = one epoch of 10 examples
    other = SFTSampler(_examples(), seed=4)
    assert [_row_examples(other.micro_batch(s, 0, 1, 2)) for s in range(5)] != \
        [_row_examples(a.micro_batch(s, 0, 1, 2)) for s in range(5)]


def test_ranks_take_slices_of_the_same_global_batch():
    sampler = SFTSampler(_examples(), seed=0)
    for step in range(3):
        one = [e for m in range(2) for e in _row_examples(sampler.micro_batch(step, m, 2, 4, 0, 1))]
        two = [e for m in range(2) for r in range(2) for e in _row_examples(sampler.micro_batch(step, m, 2, 2, r, 2))]
        assert one == two


def test_resuming_the_loader_mid_run_gives_the_same_batches():
    sampler = SFTSampler(_examples(), seed=1)
    straight = MicroBatchLoader(sampler, 2, 3, 0, 1, stop_step=6)
    expected = [straight.get(s, m) for s in range(6) for m in range(2)]
    resumed = MicroBatchLoader(sampler, 2, 3, 0, 1, stop_step=6)
    got = [resumed.get(s, m) for s in range(3, 6) for m in range(2)]
    for x, y in zip(expected[6:], got):
        assert torch.equal(x.inputs, y.inputs) and torch.equal(x.targets, y.targets)
