"""Gradient cosine similarity between the training set and downstream tasks, and between training
domains (paper Sec. 5.1, Fig. 7b), averaged over checkpoints.

At each checkpoint we take the fp32 gradient (all parameters) of
- each training domain's mean loss on fixed windows of its data (sources.training_set),
- the training set: the run's mixture, sum_d w_d g_d / sum_d w_d (exact: the gradient of the mixture loss),
- each downstream task's gold-answer loss (sources.gold_loss),
- each OOD domain's mean loss on windows of its validation stream (paper Tab. 4's "OOD Set"),
and report cos/train-<task>, cos/train-<ood>, cos/<domain>-<task> and cos/<a>-<b> over training-domain
pairs, plus the means mean/train-downstream, mean/train-ood and mean/domains (Tab. 4's "Pretrain Set":
E_{i != j} cos(g_i, g_j)). Averages over checkpoints are plain means per key.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch

from nexus_pretrain.analysis.sources import (Sequences, TrainingSet, domain_loss, gold_loss, load_checkpoint_model,
                                             training_set)
from nexus_pretrain.optim.grad_similarity import combine_gradients, gradient_cosines, mean_over, named_gradients

TRAIN = "train"


def cosine_pairs(domains: Sequence[str], tasks: Sequence[str], ood: Sequence[str] = ()) -> List[Tuple[str, str]]:
    """train-task, train-OOD domain, domain-task and domain-domain pairs, in that order."""
    pairs = [(TRAIN, t) for t in tasks]
    pairs += [(TRAIN, o) for o in ood]
    pairs += [(d, t) for d in domains for t in tasks]
    pairs += list(combinations(domains, 2))
    return pairs


def checkpoint_cosines(model: torch.nn.Module, train: TrainingSet, tasks: Mapping[str, Sequences],
                       batch_size: int = 8, include_ood: bool = True) -> Dict[str, float]:
    """The cosines at the model's current parameters (see the module docstring)."""
    ood = dict(train.ood or {}) if include_ood else {}
    names = [*train.batches, *ood, *tasks]
    if TRAIN in names or len(set(names)) != len(names):
        raise ValueError(f"source names {names} must be distinct and not {TRAIN!r} (the training mixture)")
    sources: Dict[str, Any] = {d: ("domain", b) for d, b in {**train.batches, **ood}.items()}
    sources.update({t: ("task", s) for t, s in tasks.items()})

    def loss_fn(m: torch.nn.Module, source: Tuple[str, Any]) -> torch.Tensor:
        kind, data = source
        return domain_loss(m, data) if kind == "domain" else gold_loss(m, data, batch_size)

    grads = named_gradients(model, loss_fn, sources)
    grads[TRAIN] = combine_gradients(grads, train.weights)
    domains, task_names = list(train.batches), list(tasks)
    result = gradient_cosines(grads, cosine_pairs(domains, task_names, list(ood)))
    if task_names:
        result["mean/train-downstream"] = sum(result[f"cos/{TRAIN}-{t}"] for t in task_names) / len(task_names)
    if ood:
        result["mean/train-ood"] = sum(result[f"cos/{TRAIN}-{o}"] for o in ood) / len(ood)
    if len(domains) > 1:
        pairs = list(combinations(domains, 2))
        result["mean/domains"] = sum(result[f"cos/{a}-{b}"] for a, b in pairs) / len(pairs)
    return result


def cosines_over_checkpoints(checkpoints: Sequence[Any], tasks_fn, n_sequences: int, batch_size: int,
                             split: str = "train", device: str = "cpu") -> Dict[str, Any]:
    """checkpoint_cosines at each checkpoint path and their mean.

    ``tasks_fn(loaded_checkpoint)`` gives the task sequences (tokenized for that checkpoint's tokenizer
    and context); the training windows come from each checkpoint's own run config.
    """

    per_checkpoint = []
    for path in checkpoints:
        loaded = load_checkpoint_model(path, device)
        train = training_set(loaded.cfg, n_sequences, batch_size, split)
        values = checkpoint_cosines(loaded.model, train, tasks_fn(loaded), batch_size)
        per_checkpoint.append({"checkpoint": str(path), "step": loaded.step, "weights": train.weights,
                               "cosines": values})
    return {"split": split, "sequences_per_domain": n_sequences, "checkpoints": per_checkpoint,
            "mean": mean_over([c["cosines"] for c in per_checkpoint])}
