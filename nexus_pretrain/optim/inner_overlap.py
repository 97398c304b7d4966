"""Nexus's inner step overlapped with the next micro-batch's forward pass, on one GPU.

The update ``p -= scale * g`` of every parameter is memory-bound (about 7 ms at 1.3B parameters on an
H100) and, run in line, sits between two compute-bound passes. Here it runs on a side stream, one
group of parameters per forward region in forward order; a forward pre-hook on each region makes the
compute stream wait for that region's group only, so block 0 starts as soon as its own weights are
updated while later blocks' updates proceed beside it. The kernels and their order per parameter are
those of the in-line step, so the result is bitwise the same.

Hand-written because no library overlaps an optimizer's per-parameter update with the next forward.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
from torch import nn


def parameter_groups(params: Sequence[torch.Tensor], root: nn.Module, regions: Sequence[nn.Module]) -> List[List[int]]:
    """Indices into ``params`` per forward region: first those in no region (owned by the root, e.g.
    embeddings and the output head, the root's pre-hook waits for them), then each region's own."""
    index = {id(p): i for i, p in enumerate(params)}
    assigned: set = set()
    by_region = []
    for region in regions:
        group = [index[id(p)] for p in region.parameters() if id(p) in index and index[id(p)] not in assigned]
        assigned.update(group)
        by_region.append(group)
    rest = [i for i in range(len(params)) if i not in assigned]
    return [rest, *by_region]


class OverlappedInnerStep:
    """Launches the inner step per parameter group on a side stream; pre-hooks on the root and each
    region order the next forward after the group it reads. ``wait()`` joins the side stream before
    anything else reads or writes the parameters (the outer step, checkpointing)."""

    def __init__(self, params: Sequence[torch.Tensor], root: nn.Module, regions: Sequence[nn.Module]):
        self.params = list(params)
        self.groups = parameter_groups(self.params, root, regions)
        self.device = self.params[0].device
        self.stream = torch.cuda.Stream(self.device)
        self.events = [torch.cuda.Event() for _ in self.groups]
        self.pending = False
        self._handles = [module.register_forward_pre_hook(self._waiter(i))
                         for i, module in enumerate([root, *regions])]

    def _waiter(self, group: int) -> Callable:
        def wait_for_group(module: nn.Module, args) -> None:  # noqa: ARG001
            if self.pending:
                torch.cuda.current_stream(self.device).wait_event(self.events[group])

        return wait_for_group

    @torch.no_grad()
    def launch(self, grads: List[Optional[torch.Tensor]], scale: torch.Tensor) -> None:
        """Start p -= scale * g for every parameter with a gradient (``grads`` aligned with params)."""
        self.stream.wait_stream(torch.cuda.current_stream(self.device))  # gradients and scale are ready
        with torch.cuda.stream(self.stream):
            for group, event in zip(self.groups, self.events):
                members = [i for i in group if grads[i] is not None]
                if members:
                    local = [grads[i] for i in members]
                    torch._foreach_addcmul_([self.params[i] for i in members], local, [scale] * len(local),
                                            value=-1.0)
                event.record()
        # The caller drops the gradients and the scale now: their memory must outlive the side stream's reads.
        for g in grads:
            if g is not None:
                g.record_stream(self.stream)
        scale.record_stream(self.stream)
        self.pending = True

    def wait(self) -> None:
        """Make the compute stream wait for every launched update."""
        if self.pending:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            self.pending = False

    def remove(self) -> None:
        """Unregister the pre-hooks."""
        for handle in self._handles:
            handle.remove()
