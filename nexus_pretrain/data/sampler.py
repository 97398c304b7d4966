"""Packed training sequences drawn from per-domain token streams by mixture weight.

The sequences of optimizer step ``s`` are a pure function of (seed, s): a resumed run sees exactly
the batches of the uninterrupted run, and every world size and micro-batch see the same global batch
and the same inner batches (layout.py says which rank passes which rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping

import numpy as np
import torch

from nexus_pretrain.data.layout import MIXTURE_MODES, BatchLayout


@dataclass
class MicroBatch:
    """Inputs and next-token targets of shape (B, T), and the domain of each row (by name, and as an
    index into the sampler's domain list)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    domains: List[str]
    domain_ids: torch.Tensor

    def pin_memory(self) -> "MicroBatch":
        """The same batch with tensors in page-locked memory (DataLoader calls this with pin_memory=True)."""
        return MicroBatch(self.inputs.pin_memory(), self.targets.pin_memory(), self.domains,
                          self.domain_ids.pin_memory())

    def to(self, device: torch.device) -> "MicroBatch":
        """The same batch with tensors on ``device``."""
        non_blocking = device.type == "cuda"
        return MicroBatch(self.inputs.to(device, non_blocking=non_blocking),
                          self.targets.to(device, non_blocking=non_blocking), self.domains,
                          self.domain_ids.to(device, non_blocking=non_blocking))


def normalized_weights(weights: Mapping[str, float]) -> Dict[str, float]:
    """Weights scaled to sum to one, zero-weight domains dropped."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("data.domains weights sum to 0; give some domain a positive weight")
    return {name: w / total for name, w in weights.items() if w > 0}


def _uniform(weights: Mapping[str, float]) -> bool:
    values = list(weights.values())
    return max(values) - min(values) <= 1e-12 * max(values)


class MixtureSampler:
    """Draws windows of seq_len + 1 tokens from domain streams.

    ``mode="mixed"``: each sequence's domain is drawn by weight (paper Alg. 3).
    ``mode="per_domain"``: every inner batch holds one domain; each group of n_domains inner batches
    visits every domain once, in a fresh random order (paper Alg. 1: sources sampled uniformly, so the
    mixture weights cancel). Refused unless the weights are uniform, so a mixture is never dropped silently.
    ``mode="per_domain_weighted"``: every inner batch holds one domain, drawn by weight (independently per
    inner batch), so domain shares follow the mixture.
    """

    def __init__(self, streams: Mapping[str, np.ndarray], weights: Mapping[str, float], seq_len: int,
                 seed: int, mode: str = "mixed"):
        self.weights = normalized_weights(weights)
        missing = [d for d in self.weights if d not in streams]
        if missing:
            raise ValueError(f"data.domains names {missing} but no tokens were loaded for them")
        short = [d for d in self.weights if len(streams[d]) <= seq_len + 1]
        if short:
            raise ValueError(f"domains {short} have fewer than data.seq_len+2={seq_len + 2} tokens; lower data.seq_len")
        if mode not in MIXTURE_MODES:
            raise ValueError(f"data.microbatch_domains={mode!r} is not one of {', '.join(MIXTURE_MODES)}")
        if mode == "per_domain" and not _uniform(self.weights):
            shares = ", ".join(f"{d} {w:.3g}" for d, w in self.weights.items())
            raise ValueError(f"data.microbatch_domains=per_domain samples domains uniformly (paper Alg. 1) and would "
                             f"ignore the mixture ({shares}); use data.microbatch_domains=per_domain_weighted to draw "
                             "each inner batch's domain by weight, or give every domain the same weight")
        self.streams, self.seq_len, self.seed, self.mode = streams, seq_len, seed, mode
        self.domains = list(self.weights)
        self.train_tokens: Dict[str, int] = {d: len(streams[d]) for d in self.domains}
        """Tokens of each domain's training stream (what data/epochs.py divides by)."""

    def step_plan(self, step: int, global_batch: int, inner_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """Domain index and start offset of each of the step's global_batch sequences, in order."""
        if global_batch % inner_steps:
            raise ValueError(f"global batch {global_batch} not divisible into {inner_steps} inner batches")
        rng = np.random.default_rng([self.seed, step])
        n = len(self.domains)
        probs = np.array([self.weights[d] for d in self.domains])
        if self.mode == "mixed":
            domain_idx = rng.choice(n, size=global_batch, p=probs)
        else:
            if self.mode == "per_domain":
                if inner_steps % n:
                    raise ValueError(f"data.microbatch_domains=per_domain needs optim.inner_steps ({inner_steps}) to be "
                                     f"a multiple of the number of domains ({n}); change optim.inner_steps")
                order = np.concatenate([rng.permutation(n) for _ in range(inner_steps // n)])
            else:
                order = rng.choice(n, size=inner_steps, p=probs)
            domain_idx = np.repeat(order, global_batch // inner_steps)
        highs = np.array([len(self.streams[d]) - self.seq_len - 1 for d in self.domains])
        starts = (rng.random(global_batch) * highs[domain_idx]).astype(np.int64)
        return domain_idx, starts

    def micro_batch(self, step: int, layout: BatchLayout, pass_index: int, rank: int = 0) -> MicroBatch:
        """Rank ``rank``'s forward/backward pass ``pass_index`` of optimizer step ``step``."""
        domain_idx, starts = self.step_plan(step, layout.global_batch, layout.inner_steps)
        first, count = layout.rows(pass_index, rank)
        ids = domain_idx[first:first + count]
        rows = [self.streams[self.domains[d]][start:start + self.seq_len + 1].astype(np.int64)
                for d, start in zip(ids, starts[first:first + count])]
        window = torch.from_numpy(np.stack(rows))
        names = [self.domains[d] for d in ids]
        return MicroBatch(window[:, :-1], window[:, 1:], names, torch.from_numpy(ids.astype(np.int64)))


def eval_batches(stream: np.ndarray, seq_len: int, n_sequences: int, batch_size: int) -> List[MicroBatch]:
    """Fixed, evenly spaced, non-overlapping windows of a validation stream, in batches (or, for a held-out
    set with its own ``eval_batches``, such as SFT examples, its first n_sequences rows)."""
    if hasattr(stream, "eval_batches"):
        return stream.eval_batches(seq_len, n_sequences, batch_size)
    available = (len(stream) - 1) // seq_len
    if available < 1:
        raise ValueError(f"validation stream of {len(stream)} tokens is shorter than data.seq_len={seq_len}")
    count = min(n_sequences, available)
    starts = np.linspace(0, (available - 1) * seq_len, count).astype(np.int64) // seq_len * seq_len
    rows = np.stack([stream[s:s + seq_len + 1].astype(np.int64) for s in starts])
    window = torch.from_numpy(rows)
    no_domain = torch.empty(0, dtype=torch.int64)
    return [MicroBatch(window[i:i + batch_size, :-1], window[i:i + batch_size, 1:], [], no_domain)
            for i in range(0, count, batch_size)]
