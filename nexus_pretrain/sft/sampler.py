"""Padded SFT rows and the sampler that draws them, with the pretraining sampler's interface.

Each row holds one example, padded to data.seq_len (not packed): the model has no document-masked
attention, so packed examples would attend to each other, and the trainer's per-row mean loss would
weight the examples of a row by their lengths. Padding sits after the example and causal attention
never looks ahead, so it changes no logit of a real token; its targets are ignored (-100) like the prompt's.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch

from nexus_pretrain.data.layout import BatchLayout
from nexus_pretrain.data.sampler import MicroBatch

IGNORE = -100
DOMAIN = "sft"


class SFTExamples:
    """Encoded examples (at most seq_len + 1 tokens each) stored ragged: token ids and response masks."""

    def __init__(self, ids: Sequence[np.ndarray], response: Sequence[np.ndarray], seq_len: int, pad_id: int):
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        assert (lengths <= seq_len + 1).all()
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        self.ids = np.concatenate(list(ids)).astype(np.int64) if len(ids) else np.zeros(0, np.int64)
        self.response = np.concatenate(list(response)).astype(bool) if len(ids) else np.zeros(0, bool)
        self.seq_len, self.pad_id = seq_len, pad_id

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def response_tokens(self) -> int:
        """Trained (response) tokens over all examples, first tokens excluded (they are never a target)."""
        return int(sum(self.response[a + 1:b].sum() for a, b in zip(self.offsets[:-1], self.offsets[1:])))

    def batch(self, indices: Sequence[int]) -> MicroBatch:
        """Rows ``indices``: inputs padded with pad_id, targets -100 on prompt and padding positions."""
        window = np.full((len(indices), self.seq_len + 1), self.pad_id, dtype=np.int64)
        labels = np.full((len(indices), self.seq_len + 1), IGNORE, dtype=np.int64)
        for row, i in enumerate(indices):
            a, b = self.offsets[i], self.offsets[i + 1]
            window[row, :b - a] = self.ids[a:b]
            labels[row, :b - a] = np.where(self.response[a:b], self.ids[a:b], IGNORE)
        return MicroBatch(torch.from_numpy(window[:, :-1]), torch.from_numpy(labels[:, 1:]), [DOMAIN] * len(indices),
                          torch.zeros(len(indices), dtype=torch.int64))

    def eval_batches(self, seq_len: int, n_sequences: int, batch_size: int) -> List[MicroBatch]:
        """The first n_sequences examples in batches (the held-out set's counterpart of sampler.eval_batches)."""
        if seq_len != self.seq_len:
            raise ValueError(f"SFT examples were encoded for seq_len {self.seq_len}, not {seq_len}")
        count = min(n_sequences, len(self))
        return [self.batch(range(i, min(i + batch_size, count))) for i in range(0, count, batch_size)]


class SFTSampler:
    """Draws SFT rows epoch by epoch: global example g of the run (step x global batch + position in the
    step) is example ``permutation(seed, epoch)[g mod N]`` with epoch = g div N, so every example is seen
    once per epoch and a step's rows are a pure function of (seed, step): resume is exact, and the global
    batch is the same for every world size and micro-batch (data/layout.py)."""

    def __init__(self, examples: SFTExamples, seed: int):
        if len(examples) == 0:
            raise ValueError("no SFT training examples")
        self.examples, self.seed = examples, seed
        self.domains = [DOMAIN]
        self.weights: Dict[str, float] = {DOMAIN: 1.0}
        # a row per example, counted as seq_len tokens as the trainer counts rows: epochs = examples seen / N
        self.train_tokens: Dict[str, int] = {DOMAIN: len(examples) * examples.seq_len}
        self._permutations: Dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.clear()
            self._permutations[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
        return self._permutations[epoch]

    def example_indices(self, first: int, count: int) -> np.ndarray:
        """Examples at global positions first .. first + count - 1 of the run's sample order."""
        positions = np.arange(first, first + count, dtype=np.int64)
        n = len(self.examples)
        return np.array([self._permutation(int(g // n))[g % n] for g in positions], dtype=np.int64)

    def micro_batch(self, step: int, layout: BatchLayout, pass_index: int, rank: int = 0) -> MicroBatch:
        """Rank ``rank``'s forward/backward pass ``pass_index`` of optimizer step ``step``."""
        first, count = layout.rows(pass_index, rank)
        return self.examples.batch(self.example_indices(step * layout.global_batch + first, count))
