"""Nexus on DeepSpeed ZeRO's flat fp32 partitions: the client optimizer ZeRO wraps, and the only code that
reads or writes ZeRO internals (the partition lists, and re-publishing a partition into the module).

See backends/deepspeed.py for how the engine's step maps onto Nexus's micro_step and step.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from nexus_pretrain.optim.nexus import Nexus


def dp_norm(tensors: List[torch.Tensor], group: Any, device: torch.device) -> torch.Tensor:
    """Global L2 norm of tensors that are this rank's disjoint shards of one vector."""
    local = torch.nn.utils.get_total_norm(tensors, foreach=True)
    squared = local.to(device=device, dtype=torch.float32).square()
    dist.all_reduce(squared, group=group)
    return squared.sqrt().to(local.device)


def fp32_partitions(zero_opt: Any, stage: int, n_groups: int) -> List[torch.Tensor]:
    """This rank's flat fp32 master partition of each param group (ZeRO internals)."""
    if stage < 3:
        parts = list(zero_opt.single_partition_of_fp32_groups)
    else:
        parts = list(zero_opt.fp32_partitioned_groups_flat)
        mapping = zero_opt.sub_group_to_group_id  # {sub_group: param_group}
        if [mapping[i] for i in range(len(parts))] != list(range(n_groups)):
            raise RuntimeError("ZeRO-3 split a param group into several sub-groups; raise sub_group_size")
    if len(parts) != n_groups:
        raise RuntimeError(f"ZeRO made {len(parts)} fp32 partitions for {n_groups} param groups")
    return parts


def republish_partition(zero_opt: Any, stage: int, index: int) -> None:
    """Copy fp32 partition ``index`` into the module's partition, as ZeRO does after a group's step."""
    if stage < 3:
        rank = dist.get_rank(group=zero_opt.real_dp_process_group[index])
        zero_opt.parallel_partitioned_bit16_groups[index][rank].data.copy_(
            zero_opt.single_partition_of_fp32_groups[index].data)
    else:
        zero_opt._reassign_or_swap_out_partitioned_parameters(index)


class NexusClient(torch.optim.Optimizer):
    """The torch optimizer ZeRO wraps for Nexus: each engine step is one Nexus micro-step (and, on the
    window's last micro-batch, the Nexus step) on ZeRO's fp32 partitions.

    Its own param groups are only ZeRO's handles (ZeRO puts its partitions in them while stepping);
    the outer AdamW lives inside ``self.nexus`` with one partition per group. ``state_dict`` is the
    Nexus state, which ZeRO writes per rank into its checkpoint.
    """

    def __init__(self, groups: List[Dict[str, Any]], defaults: Dict[str, Any]):
        self._own_state: Dict[Any, Any] = {}
        self.nexus: Optional[Nexus] = None
        super().__init__(groups, defaults)
        self.partitions: List[torch.Tensor] = []
        self.close_window = False
        self.metrics: Dict[str, torch.Tensor] = {}
        self._grads: Dict[int, torch.Tensor] = {}
        self._on_event = None  # called with the indices stepped outside ZeRO's own call

    @property
    def state(self):  # ZeRO links optimizer-state views to this: the outer AdamW's state
        return self.nexus.outer.state if self.nexus is not None else self._own_state

    @state.setter
    def state(self, value):
        self._own_state = value

    def attach(self, nexus: Nexus, partitions: List[torch.Tensor], on_event) -> None:
        self.nexus, self.partitions, self._on_event = nexus, partitions, on_event

    @torch.no_grad()
    def step(self, closure=None):
        index = {id(p): i for i, p in enumerate(self.partitions)}
        current = set()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and id(p) in index:
                    self._grads[index[id(p)]] = p.grad
                    current.add(index[id(p)])
        if not current:
            raise RuntimeError("DeepSpeed stepped the Nexus client without gradients of its partitions")
        if len(self._grads) < len(self.partitions):
            return None  # ZeRO steps the remaining groups next; Nexus needs all of them
        grads, self._grads = [self._grads[i] for i in range(len(self.partitions))], {}
        saved = [p.grad for p in self.partitions]
        for p, g in zip(self.partitions, grads):
            p.grad = g
        nexus = self.nexus
        if nexus.variant == "nsgd" or self.close_window:
            nexus.micro_step()
            self.metrics = nexus.step()
        else:
            nexus.micro_step()
        for p, g in zip(self.partitions, saved):  # ZeRO's gradient buffers, as it left them
            p.grad = g
        self._on_event([i for i in range(len(self.partitions)) if i not in current])
        return None

    def state_dict(self) -> Dict[str, Any]:
        return self.nexus.state_dict()

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.nexus.load_state_dict(state_dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """ZeRO owns and clears the partitions' gradients."""
