"""The mixture sampler: a pure function of (seed, step), world-size invariant, per-domain mode."""

import numpy as np
import pytest
import torch

from nexus_pretrain.data.layout import batch_layout
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
    batch = sampler().micro_batch(3, batch_layout(20, 4, 1, 5), pass_index=1)
    assert batch.inputs.shape == (5, 16)
    torch.testing.assert_close(batch.inputs[:, 1:], batch.targets[:, :-1])
    for row, name, index in zip(batch.inputs, batch.domains, batch.domain_ids.tolist()):
        assert {domain_of(int(t)) for t in row} == {name}
        assert sampler().domains[index] == name
        assert torch.all(row[1:] - row[:-1] == 1)  # a contiguous window of the stream


def test_same_step_same_batch_and_steps_differ():
    s1, s2 = sampler(), sampler()
    layout = batch_layout(16, 4, 1, 4)
    a = s1.micro_batch(7, layout, 2)
    torch.testing.assert_close(a.inputs, s2.micro_batch(7, layout, 2).inputs)
    assert not torch.equal(a.inputs, s1.micro_batch(8, layout, 2).inputs)
    assert not torch.equal(a.inputs, sampler(seed=1).micro_batch(7, layout, 2).inputs)


def inner_batches(s, step, inner_steps, world_size, micro_batch, global_batch=16):
    """The step's inner batches as every rank's passes put together, in rank order."""
    layout = batch_layout(global_batch, inner_steps, world_size, micro_batch)
    per_inner = layout.local_micro_batches
    return [torch.cat([s.micro_batch(step, layout, k * per_inner + j, rank).inputs
                       for rank in range(world_size) for j in range(per_inner)]) for k in range(inner_steps)]


@pytest.mark.parametrize("world_size,micro_batch", [(1, 4), (1, 1), (2, 2), (2, 1), (4, 1)])
def test_inner_batches_do_not_depend_on_world_size_or_micro_batch(world_size, micro_batch):
    for mode in ("mixed", "per_domain_weighted"):
        s = sampler(mode=mode)
        reference = inner_batches(s, 5, 4, 1, 4)
        for got, want in zip(inner_batches(s, 5, 4, world_size, micro_batch), reference):
            torch.testing.assert_close(got, want)


def test_layout_errors_name_the_fix():
    with pytest.raises(ValueError, match="set optim.inner_steps to a divisor of 16"):
        batch_layout(16, 3, 1, 4)
    with pytest.raises(ValueError, match="cannot be split over 8 ranks"):
        batch_layout(16, 4, 8, 1)
    with pytest.raises(ValueError, match="set trainer.micro_batch to a divisor of 4"):
        batch_layout(16, 4, 1, 3)
    assert batch_layout(16, 4, 2, 8).micro_batch == 2  # a micro-batch larger than a rank's share is lowered


def test_mixed_mode_follows_weights():
    s = sampler(weights={"a": 1, "b": 3})
    names = [n for step in range(200) for n in s.micro_batch(step, batch_layout(16, 1, 1, 16), 0).domains]
    assert names.count("b") / len(names) == pytest.approx(0.75, abs=0.03)


def test_per_domain_mode_gives_single_domain_inner_batches_visiting_each_domain():
    s = sampler(mode="per_domain", weights={"a": 1, "b": 1, "c": 1})
    layout = batch_layout(36, 6, 2, 1)  # 6 inner batches of 6 sequences, 3 per rank, 3 passes per inner batch
    for step in range(5):
        seen = []
        for inner in range(6):
            names = {n for rank in range(2) for j in range(3) for n in s.micro_batch(step, layout, inner * 3 + j, rank).domains}
            assert len(names) == 1
            seen.append(names.pop())
        assert sorted(seen[:3]) == sorted(seen[3:]) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="multiple of the number of domains"):
        s.micro_batch(0, batch_layout(16, 4, 1, 4), 0)


def achieved_shares(mode, weights, steps=300):
    s = sampler(mode=mode, weights=weights)
    layout = batch_layout(12, 6, 1, 2)
    names = [n for step in range(steps) for p in range(layout.passes) for n in s.micro_batch(step, layout, p).domains]
    return {d: names.count(d) / len(names) for d in ("a", "b", "c")}


def test_per_domain_modes_achieved_shares():
    uniform = achieved_shares("per_domain", {"a": 1, "b": 1, "c": 1})
    assert uniform == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, abs=1e-12)  # every step visits each twice
    weighted = achieved_shares("per_domain_weighted", {"a": 0.45, "b": 0.10, "c": 0.45})
    assert weighted == pytest.approx({"a": 0.45, "b": 0.10, "c": 0.45}, abs=0.03)


def test_per_domain_refuses_a_non_uniform_mixture():
    with pytest.raises(ValueError, match="per_domain samples domains uniformly .* use data.microbatch_domains=per_domain_weighted"):
        sampler(mode="per_domain", weights={"a": 0.45, "b": 0.10, "c": 0.45})


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
