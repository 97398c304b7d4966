"""The mixture sampler: a pure function of (seed, step), world-size invariant, per-domain mode."""

import numpy as np
import pytest
import torch

from nexus_pretrain.data.sampler import MixtureSampler, eval_batches

STREAMS = {
    "a": np.arange(0, 1000, dtype=np.uint16),
    "b": np.arange(1000, 3000, dtype=np.uint16),
    "c": np.arange(3000, 3500, dtype=np.uint16),
}


def domain_of(token: int) -> str:
    return "a" if token < 1000 else ("b" if token < 3000 else "c")


def sampler(mode="mixed", weights=None, seed=0):
    return MixtureSampler(STREAMS, weights or {"a": 1, "b": 1, "c": 2}, seq_len=16, seed=seed, mode=mode)


def test_targets_are_inputs_shifted_and_rows_come_from_their_domain():
    batch = sampler().micro_batch(step=3, micro=1, micro_batches=4, micro_batch_size=5)
    assert batch.inputs.shape == (5, 16)
    torch.testing.assert_close(batch.inputs[:, 1:], batch.targets[:, :-1])
    for row, name, index in zip(batch.inputs, batch.domains, batch.domain_ids.tolist()):
        assert {domain_of(int(t)) for t in row} == {name}
        assert sampler().domains[index] == name
        assert torch.all(row[1:] - row[:-1] == 1)  # a contiguous window of the stream


def test_same_step_same_batch_and_steps_differ():
    s1, s2 = sampler(), sampler()
    a = s1.micro_batch(7, 2, 4, 4)
    torch.testing.assert_close(a.inputs, s2.micro_batch(7, 2, 4, 4).inputs)
    assert not torch.equal(a.inputs, s1.micro_batch(8, 2, 4, 4).inputs)
    assert not torch.equal(a.inputs, sampler(seed=1).micro_batch(7, 2, 4, 4).inputs)


def test_world_sizes_see_the_same_global_batch():
    s = sampler()
    one = torch.cat([s.micro_batch(5, m, 4, 4).inputs for m in range(4)])  # 1 rank, 4 micro-batches of 4
    two = torch.cat([s.micro_batch(5, m, 2, 4, rank=r, world_size=2).inputs for m in range(2) for r in range(2)])
    torch.testing.assert_close(one, two)


def test_mixed_mode_follows_weights():
    s = sampler(weights={"a": 1, "b": 3})
    names = [n for step in range(200) for n in s.micro_batch(step, 0, 1, 16).domains]
    assert names.count("b") / len(names) == pytest.approx(0.75, abs=0.03)


def test_per_domain_mode_gives_single_domain_micro_batches_visiting_each_domain():
    s = sampler(mode="per_domain")
    for step in range(5):
        seen = []
        for micro in range(6):
            names = set(s.micro_batch(step, micro, 6, 3).domains)
            assert len(names) == 1
            seen.append(names.pop())
        assert sorted(seen[:3]) == sorted(seen[3:]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="multiple of the number of domains"):
        s.micro_batch(0, 0, 4, 3)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"no tokens were loaded for them"):
        MixtureSampler(STREAMS, {"a": 1, "zzz": 1}, 16, 0)
    with pytest.raises(ValueError, match="fewer than data.seq_len"):
        MixtureSampler(STREAMS, {"c": 1}, 600, 0)


def test_eval_batches_are_fixed_non_overlapping_windows():
    batches = eval_batches(STREAMS["b"], seq_len=10, n_sequences=7, batch_size=3)
    assert [len(b.inputs) for b in batches] == [3, 3, 1]
    starts = [int(row[0]) for b in batches for row in b.inputs]
    assert starts == sorted(set(starts)) and all(b - a >= 10 for a, b in zip(starts, starts[1:]))
