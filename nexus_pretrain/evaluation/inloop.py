"""Downstream (gold-answer) losses during training, with nexus-eval's definition and code.

The benchmarks' prompts and gold answers are tokenized once with the run's tokenizer, through the same
lm-eval tasks and ``downstream_loss`` functions ``nexus-eval`` uses; every evaluation then scores them on
the live model, so downstream/<task> curves exist without exporting checkpoints.
"""

from __future__ import annotations

import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from nexus_pretrain.evaluation.benchmarks import select
from nexus_pretrain.evaluation.downstream_loss import continuation_nll, gold_sequences, load_tasks
from nexus_pretrain.evaluation.harness import offline_env, task_manager


class DownstreamProbe:
    """Gold-answer sequences of some benchmarks, ready to score on a model (``losses``)."""
    def __init__(self, sequences: Dict[str, List[Tuple[List[int], int]]], max_len: int):
        self.sequences, self.max_len = sequences, max_len

    @classmethod
    def build(cls, task_names: Sequence[str], data_dir: str | Path, tokenizer: Any, max_len: int,
              limit: Optional[int]) -> "DownstreamProbe":
        """Tokenize the first ``limit`` examples of each named benchmark (nexus-eval's names) from the local
        files in ``data_dir``; ValueError names an unknown benchmark."""

        benchmarks = select(list(task_names))
        offline_env(Path(data_dir))
        with tempfile.TemporaryDirectory(prefix="nexus_inloop_tasks_") as work:
            tasks = load_tasks(benchmarks, task_manager(benchmarks, Path(data_dir), Path(work)))
            names = {b.column: b.name for b in benchmarks}
            sequences = {names[column]: gold_sequences(tokenizer, column_tasks, max_len, limit)
                         for column, column_tasks in tasks.items()}
        return cls(sequences, max_len)

    @torch.no_grad()
    def losses(self, model: torch.nn.Module, device: torch.device, autocast: Callable[[], AbstractContextManager],
               batch_size: int) -> Dict[str, float]:
        """downstream/<benchmark name>: mean NLL per gold-answer token under ``model`` (its mode restored)."""
        was_training = model.training
        model.eval()
        try:
            out = {}
            for name, sequences in self.sequences.items():
                with autocast():
                    nll, tokens = continuation_nll(model, sequences, self.max_len, batch_size, device)
                out[f"downstream/{name}"] = nll / tokens if tokens else float("nan")
            return out
        finally:
            model.train(was_training)
