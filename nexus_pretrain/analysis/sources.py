"""What the Sec. 5.1 analyses are computed on: a run checkpoint's model, its training mixture and the
downstream tasks' gold-answer sequences.

- Model: ``load_checkpoint_weights`` (any backend, any world size) into our Llama, fp32.
- Training set: fixed, evenly spaced windows (``eval_batches``) of each training domain's *train* stream
  (or its validation stream) as the run's config builds it (``build_data``); the training loss is the
  mixture of the per-domain mean losses with the run's sampling weights, sum_d w_d L_d / sum_d w_d.
- Downstream task: the evaluation stage's gold-answer pairs (lm-eval Task objects from our task YAMLs,
  ``gold_pairs`` / ``encode_pair`` / ``_window`` of evaluation/downstream_loss.py), so the loss here is
  exactly nexus-eval's downstream loss (sum of continuation-token NLL / number of those tokens), only
  differentiable.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from nexus_pretrain.data.build import load_tokenizer_for
from nexus_pretrain.data.sampler import eval_batches
from nexus_pretrain.evaluation.benchmarks import data_files, select
from nexus_pretrain.evaluation.downstream_loss import gold_sequences, load_tasks, sequences_nll
from nexus_pretrain.evaluation.harness import offline_env, task_manager
from nexus_pretrain.model.llama import Llama, lm_loss, rope_cache
from nexus_pretrain.run_data import build_data
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.checkpoint import read_meta
from nexus_pretrain.train.export import load_checkpoint_weights

Sequences = List[Tuple[List[int], int]]
"""Token ids of one example (prefix + context + gold continuation) and how many end tokens are scored."""


# ------------------------------------------------------------------------------------------ checkpoints
def resolve_checkpoints(paths: Sequence[str | Path], all_of_run: bool = True) -> List[Path]:
    """Checkpoint directories from checkpoint paths and/or run directories.

    A run directory stands for all its checkpoints (``all_of_run``) or its newest one. Raises
    FileNotFoundError naming a path that is neither.
    """

    out: List[Path] = []
    for path in map(Path, paths):
        if (path / ckpt.META_FILE).is_file():
            out.append(path)
            continue
        found = ckpt.list_checkpoints(path)
        if not found:
            raise FileNotFoundError(f"{path}: not a checkpoint directory (no {ckpt.META_FILE}) nor a run directory "
                                    "with complete checkpoints under checkpoints/")
        out.extend(found if all_of_run else found[-1:])
    if not out:
        raise FileNotFoundError("no checkpoint given")
    return out


@dataclass
class LoadedCheckpoint:
    path: Path
    step: int
    model: torch.nn.Module
    cfg: Any  # TrainConfig
    tokenizer: Any

    @property
    def run_dir(self) -> Path:
        return self.path.parent.parent


def load_checkpoint_model(path: str | Path, device: str = "cpu") -> LoadedCheckpoint:
    """Our Llama with a checkpoint's fp32 weights, its config and tokenizer."""
    path = Path(path)
    step = int(read_meta(path)["step"])
    args, state, cfg = load_checkpoint_weights(path)
    with torch.device("meta"):
        model = Llama(args)
    model = model.to_empty(device=device)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if args.tie_embeddings:
        missing = [k for k in missing if k != "output.weight"]
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint weights do not match the model (missing {missing}, unexpected "
                         f"{unexpected})")
    model.rope_cos, model.rope_sin = (t.to(device) for t in _rope(args))
    model.eval()
    return LoadedCheckpoint(path, step, model, cfg, load_tokenizer_for(cfg.data))


def _rope(args: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    return rope_cache(args.head_dim, args.max_seq_len, args.rope_theta)


# ------------------------------------------------------------------------------------------ training set
@dataclass
class TrainingSet:
    """Fixed windows of each training domain and the run's mixture weights over them."""
    batches: Dict[str, List[Any]]  # domain -> MicroBatch list
    weights: Dict[str, float]
    split: str
    ood: Dict[str, List[Any]] = None  # OOD domain -> MicroBatch list (its validation stream; never trained on)


def training_set(cfg: Any, n_sequences: int, batch_size: int, split: str = "train") -> TrainingSet:
    """``n_sequences`` evenly spaced windows of data.seq_len tokens per training domain of a run config."""
    if split not in ("train", "val"):
        raise ValueError(f"split {split!r} is not one of train, val")
    data = build_data(cfg.data, int(cfg.trainer.seed))
    streams = data.sampler.streams if split == "train" else data.val_streams
    domains = list(data.sampler.domains)
    batches = {d: eval_batches(streams[d], cfg.data.seq_len, n_sequences, batch_size) for d in domains}
    ood = {d: eval_batches(s, cfg.data.seq_len, n_sequences, batch_size) for d, s in data.ood_streams.items()}
    return TrainingSet(batches, {d: float(data.sampler.weights[d]) for d in domains}, split, ood)


def domain_loss(model: torch.nn.Module, micro_batches: Sequence[Any]) -> torch.Tensor:
    """Mean next-token loss over equal-length windows (each window weighted equally)."""
    device = next(model.parameters()).device
    total = sum(lm_loss(model(b.inputs.to(device)), b.targets.to(device)) * len(b.inputs) for b in micro_batches)
    return total / sum(len(b.inputs) for b in micro_batches)


def mixture_loss(model: torch.nn.Module, train: TrainingSet) -> torch.Tensor:
    """sum_d w_d L_d / sum_d w_d: the training (pretrain) loss of the run's mixture."""
    total = sum(train.weights.values())
    return sum(train.weights[d] * domain_loss(model, b) for d, b in train.batches.items()) / total


# ------------------------------------------------------------------------------------------ downstream
def downstream_sequences(tokenizer: Any, tasks: Sequence[str], data_dir: Path, max_len: int,
                         limit: Optional[int] = None) -> Dict[str, Sequences]:
    """Gold-answer token sequences per benchmark column, built exactly as nexus-eval's downstream loss.

    ``tasks`` are benchmark names (evaluation/benchmarks.py); raises ValueError on an unknown one and
    FileNotFoundError on missing data.
    """

    if not tasks:
        raise ValueError("no downstream task given")
    benchmarks = select(list(tasks))
    for b in benchmarks:
        data_files(b, Path(data_dir))  # one clear error before lm-eval starts
    offline_env(Path(data_dir))
    out: Dict[str, Sequences] = {}
    with tempfile.TemporaryDirectory(prefix="nexus_analysis_tasks_") as work:
        loaded = load_tasks(benchmarks, task_manager(benchmarks, Path(data_dir), Path(work)))
        for column, column_tasks in loaded.items():
            sequences = gold_sequences(tokenizer, column_tasks, max_len, limit)
            if not sequences:
                raise ValueError(f"downstream task {column}: no examples")
            out[column] = sequences
    return out


def gold_nll(model: torch.nn.Module, sequences: Sequences, batch_size: int = 8) -> Tuple[torch.Tensor, int]:
    """Summed NLL (differentiable) of the scored end tokens of each sequence, and their count (the
    batching and masking of nexus-eval's downstream loss, with gradients)."""

    device = next(model.parameters()).device
    total: torch.Tensor = torch.zeros((), device=device)
    count = 0
    for start in range(0, len(sequences), batch_size):
        nll, n = sequences_nll(model, sequences[start:start + batch_size], device)
        total, count = total + nll, count + n
    return total, count


def gold_loss(model: torch.nn.Module, sequences: Sequences, batch_size: int = 8) -> torch.Tensor:
    """nexus-eval's downstream loss of one task (token-weighted mean gold-answer NLL), differentiable."""
    nll, count = gold_nll(model, sequences, batch_size)
    return nll / max(count, 1)


# ------------------------------------------------------------------------------------------ objectives
def is_gold(data: Any) -> bool:
    """Whether ``data`` is gold-answer Sequences (else a list of MicroBatch windows of a domain)."""
    return bool(data) and isinstance(data[0], tuple)


def objective_loss(model: torch.nn.Module, data: Any, batch_size: int = 8) -> torch.Tensor:
    """The loss of a target: a task's gold-answer loss or a domain's mean window loss (differentiable)."""
    return gold_loss(model, data, batch_size) if is_gold(data) else domain_loss(model, data)


def objective_backward(model: torch.nn.Module, data: Any, batch_size: int = 8) -> float:
    """objective_loss over all of ``data`` (full batch), its gradient accumulated into .grad one forward
    chunk at a time (so memory is that of one chunk); returns the loss value."""
    if is_gold(data):
        total_tokens = sum(min(n, len(t) - 1) for t, n in data)
        total = 0.0
        for start in range(0, len(data), batch_size):
            nll, _ = gold_nll(model, data[start:start + batch_size], batch_size)
            (nll / total_tokens).backward()
            total += float(nll.detach())
        return total / total_tokens
    rows = sum(len(b.inputs) for b in data)
    total = 0.0
    for b in data:
        loss = domain_loss(model, [b]) * (len(b.inputs) / rows)
        loss.backward()
        total += float(loss.detach())
    return total


# ------------------------------------------------------------------------------------------ parameters
def flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    """All trainable parameters as one fp32 vector (a tied weight counted once)."""
    return torch.cat([p.detach().float().reshape(-1) for p in model.parameters() if p.requires_grad])


@torch.no_grad()
def set_flat_parameters(model: torch.nn.Module, flat: torch.Tensor) -> None:
    """Inverse of flat_parameters."""
    offset = 0
    for p in model.parameters():
        if p.requires_grad:
            n = p.numel()
            p.copy_(flat[offset:offset + n].view_as(p))
            offset += n
    if offset != flat.numel():
        raise ValueError(f"vector of {flat.numel()} values for {offset} parameters")
