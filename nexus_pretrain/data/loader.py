"""Background preparation of the trainer's micro-batches.

A map-style dataset whose item i is forward/backward pass (step, pass) of one rank, for steps from a start
step on, read through a ``torch.utils.data.DataLoader`` so worker processes build batches ahead of the
training loop. Every batch is still ``sampler.micro_batch(step, layout, pass, rank)``, a pure function of
(seed, step, pass, rank, layout): the number of workers never changes what is trained on.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

from torch.utils.data import DataLoader, Dataset

from nexus_pretrain.data.layout import BatchLayout
from nexus_pretrain.data.sampler import MicroBatch, MixtureSampler


class MicroBatchDataset(Dataset):
    """Item i: this rank's pass (start_step + i // passes, i % passes), up to stop_step."""

    def __init__(self, sampler: MixtureSampler, start_step: int, stop_step: int, layout: BatchLayout, rank: int):
        self.sampler, self.start_step, self.stop_step = sampler, start_step, stop_step
        self.layout, self.rank = layout, rank

    def __len__(self) -> int:
        return max(self.stop_step - self.start_step, 0) * self.layout.passes

    def position(self, index: int) -> Tuple[int, int]:
        """The (step, pass) of item ``index``."""
        step, pass_index = divmod(index, self.layout.passes)
        return self.start_step + step, pass_index

    def __getitem__(self, index: int) -> MicroBatch:
        if not 0 <= index < len(self):
            raise IndexError(index)
        step, pass_index = self.position(index)
        return self.sampler.micro_batch(step, self.layout, pass_index, self.rank)


class MicroBatchLoader:
    """Hands out this rank's passes in (step, pass) order, prepared by ``num_workers`` processes (in the
    calling process when 0).

    The underlying DataLoader starts at the first requested position and is restarted whenever a
    request is not the next position in order (a resumed run, or a caller that skipped ahead), so
    any request returns exactly ``sampler.micro_batch(step, layout, pass, rank)``.
    """

    def __init__(self, sampler: MixtureSampler, layout: BatchLayout, rank: int, stop_step: int,
                 num_workers: int = 0, pin_memory: bool = False):
        self.sampler, self.layout, self.rank, self.stop_step = sampler, layout, rank, stop_step
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self._batches: Optional[Iterator[MicroBatch]] = None
        self._next: Tuple[int, int] = (-1, -1)

    def _start(self, step: int) -> None:
        self.close()
        dataset = MicroBatchDataset(self.sampler, step, self.stop_step, self.layout, self.rank)
        loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.num_workers,
                            pin_memory=self.pin_memory)
        self._batches = iter(loader)
        self._next = (step, 0)

    def get(self, step: int, micro: int) -> MicroBatch:
        """This rank's pass ``micro`` of optimizer step ``step`` (on the CPU, pinned if configured)."""
        passes = self.layout.passes
        if not 0 <= micro < passes:
            raise ValueError(f"pass {micro} outside 0..{passes - 1}")
        if not 0 <= step < self.stop_step:
            raise ValueError(f"step {step} outside the loader's range 0..{self.stop_step - 1}")
        if (step, micro) != self._next:
            self._start(step)
            for _ in range(micro):  # a request in the middle of a step: skip to it
                next(self._batches)
        batch = next(self._batches)
        self._next = (step, micro + 1) if micro + 1 < passes else (step + 1, 0)
        return batch

    def close(self) -> None:
        """Stop the worker processes (the loader restarts on the next request)."""
        if self._batches is not None:
            shutdown = getattr(self._batches, "_shutdown_workers", None)
            if shutdown is not None:  # multi-process iterator: join workers now rather than at garbage collection
                shutdown()
            self._batches = None
        self._next = (-1, -1)
