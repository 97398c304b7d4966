"""Background preparation of the trainer's micro-batches.

A map-style dataset whose item i is micro-batch (step, micro) of one rank, for steps from a start step
on, read through a ``torch.utils.data.DataLoader`` so worker processes build batches ahead of the
training loop. Every batch is still ``sampler.micro_batch(step, micro, ...)``, a pure function of
(seed, step, micro, rank, world size): the number of workers never changes what is trained on.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

from torch.utils.data import DataLoader, Dataset

from nexus_pretrain.data.sampler import MicroBatch, MixtureSampler


class MicroBatchDataset(Dataset):
    """Item i: this rank's micro-batch (start_step + i // accumulation, i % accumulation), up to stop_step."""

    def __init__(self, sampler: MixtureSampler, start_step: int, stop_step: int, accumulation: int,
                 micro_batch: int, rank: int, world_size: int):
        self.sampler, self.start_step, self.stop_step = sampler, start_step, stop_step
        self.accumulation, self.micro_batch, self.rank, self.world_size = accumulation, micro_batch, rank, world_size

    def __len__(self) -> int:
        return max(self.stop_step - self.start_step, 0) * self.accumulation

    def position(self, index: int) -> Tuple[int, int]:
        """The (step, micro) of item ``index``."""
        step, micro = divmod(index, self.accumulation)
        return self.start_step + step, micro

    def __getitem__(self, index: int) -> MicroBatch:
        if not 0 <= index < len(self):
            raise IndexError(index)
        step, micro = self.position(index)
        return self.sampler.micro_batch(step, micro, self.accumulation, self.micro_batch, self.rank, self.world_size)


class MicroBatchLoader:
    """Hands out this rank's micro-batches in (step, micro) order, prepared by ``num_workers`` processes
    (in the calling process when 0).

    The underlying DataLoader starts at the first requested position and is restarted whenever a
    request is not the next position in order (a resumed run, or a caller that skipped ahead), so
    any request returns exactly ``sampler.micro_batch(step, micro, ...)``.
    """

    def __init__(self, sampler: MixtureSampler, accumulation: int, micro_batch: int, rank: int, world_size: int,
                 stop_step: int, num_workers: int = 0, pin_memory: bool = False):
        if num_workers < 0:
            raise ValueError(f"data.num_workers={num_workers} must be >= 0")
        self.sampler, self.accumulation, self.micro_batch = sampler, accumulation, micro_batch
        self.rank, self.world_size, self.stop_step = rank, world_size, stop_step
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self._batches: Optional[Iterator[MicroBatch]] = None
        self._next: Tuple[int, int] = (-1, -1)

    def _start(self, step: int) -> None:
        self.close()
        dataset = MicroBatchDataset(self.sampler, step, self.stop_step, self.accumulation, self.micro_batch,
                                    self.rank, self.world_size)
        loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.num_workers,
                            pin_memory=self.pin_memory)
        self._batches = iter(loader)
        self._next = (step, 0)

    def get(self, step: int, micro: int) -> MicroBatch:
        """This rank's micro-batch ``micro`` of optimizer step ``step`` (on the CPU, pinned if configured)."""
        if not 0 <= micro < self.accumulation:
            raise ValueError(f"micro-batch {micro} outside 0..{self.accumulation - 1}")
        if not 0 <= step < self.stop_step:
            raise ValueError(f"step {step} outside the loader's range 0..{self.stop_step - 1}")
        if (step, micro) != self._next:
            self._start(step)
            for _ in range(micro):  # a request in the middle of a step: skip to it
                next(self._batches)
        batch = next(self._batches)
        self._next = (step, micro + 1) if micro + 1 < self.accumulation else (step + 1, 0)
        return batch

    def close(self) -> None:
        """Stop the worker processes (the loader restarts on the next request)."""
        if self._batches is not None:
            shutdown = getattr(self._batches, "_shutdown_workers", None)
            if shutdown is not None:  # multi-process iterator: join workers now rather than at garbage collection
                shutdown()
            self._batches = None
        self._next = (-1, -1)
