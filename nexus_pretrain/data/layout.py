"""How one optimizer step's global batch is cut into inner batches, ranks and local micro-batches.

The global batch of ``global_batch`` sequences (a pure function of seed and step, see sampler.py) is
split into ``inner_steps`` (K) consecutive inner batches of ``global_batch / K`` sequences. Nexus takes
one inner step per inner batch, so K is part of the algorithm and never depends on the hardware. Each
inner batch is spread over the ranks in contiguous slices, and a rank passes its slice through the model
in ``local_micro_batches`` pieces of ``micro_batch`` sequences: a memory knob that changes no number an
optimizer sees (gradients of the pieces accumulate locally before the inner batch is reduced).

Position ``i`` of the step's sequence order belongs to inner batch ``i // inner_batch`` for every world
size and micro-batch, so 1 GPU and 64 GPUs train on the same inner batches, and every optimizer of a
paired comparison sees the same sequences in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

MIXTURE_MODES = ("mixed", "per_domain", "per_domain_weighted")
"""data.microbatch_domains: how domains fill a step's inner batches (sampler.MixtureSampler)."""


@dataclass(frozen=True)
class BatchLayout:
    """The split of a step's global batch: K inner batches, each over ``world_size`` ranks in
    ``local_micro_batches`` forward/backward passes of ``micro_batch`` sequences per rank."""

    global_batch: int
    inner_steps: int
    world_size: int
    micro_batch: int

    @property
    def inner_batch(self) -> int:
        """Sequences per inner batch, over all ranks."""
        return self.global_batch // self.inner_steps

    @property
    def rank_share(self) -> int:
        """Sequences of one inner batch on one rank."""
        return self.inner_batch // self.world_size

    @property
    def local_micro_batches(self) -> int:
        """Forward/backward passes per inner batch on one rank."""
        return self.rank_share // self.micro_batch

    @property
    def passes(self) -> int:
        """Forward/backward passes per optimizer step on one rank."""
        return self.inner_steps * self.local_micro_batches

    def position(self, pass_index: int) -> Tuple[int, int]:
        """(inner batch, local micro-batch) of a rank's pass ``pass_index`` within the step."""
        return divmod(pass_index, self.local_micro_batches)

    def rows(self, pass_index: int, rank: int) -> Tuple[int, int]:
        """(first position, count) in the step's sequence order of pass ``pass_index`` on ``rank``."""
        if not 0 <= pass_index < self.passes:
            raise ValueError(f"pass {pass_index} outside 0..{self.passes - 1}")
        inner, local = self.position(pass_index)
        first = inner * self.inner_batch + rank * self.rank_share + local * self.micro_batch
        return first, self.micro_batch


def batch_layout(global_batch: int, inner_steps: int, world_size: int, micro_batch: int) -> BatchLayout:
    """The layout for these sizes; ValueError naming the fix when they do not divide.

    A micro-batch larger than a rank's share of an inner batch is lowered to that share: it is a memory
    limit, and fewer sequences per pass change no result.
    """
    if global_batch % inner_steps:
        raise ValueError(f"trainer.global_batch={global_batch} is not divisible by optim.inner_steps={inner_steps}; "
                         f"set optim.inner_steps to a divisor of {global_batch}")
    inner_batch = global_batch // inner_steps
    if inner_batch % world_size:
        raise ValueError(f"an inner batch of {inner_batch} sequences (trainer.global_batch={global_batch} / "
                         f"optim.inner_steps={inner_steps}) cannot be split over {world_size} ranks; use a world "
                         f"size dividing {inner_batch}, or a larger global batch or fewer inner steps")
    share = inner_batch // world_size
    micro = min(micro_batch, share)
    if share % micro:
        raise ValueError(f"trainer.micro_batch={micro_batch} does not divide a rank's {share} sequences per inner "
                         f"batch (global_batch {global_batch} / inner_steps {inner_steps} / {world_size} ranks); "
                         f"set trainer.micro_batch to a divisor of {share}")
    return BatchLayout(global_batch, inner_steps, world_size, micro)
