"""How many times a run sees each domain's training tokens (epochs), and when that is past where
repeated data trains like fresh data.

The paper trains on each token about once. Repeating data is nearly as good as fresh data for up to about
4 epochs and then loses value quickly (Muennighoff et al. 2023, "Scaling Data-Constrained Language
Models"), so a comparison trained on a small local corpus for many epochs measures something else; the
run says so at start, logs ``epochs/<domain>``, and reports carry it next to the result.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping

METRIC = "epochs/"
"""The metrics' prefix: ``epochs/<domain>`` in metrics.jsonl."""

REPEATED_EPOCHS = 4.0
"""Epochs of a domain past which repeated tokens are worth measurably less than fresh ones (Muennighoff
et al. 2023: up to ~4 epochs, repeated data trains almost like unique data)."""


def epochs(tokens: Mapping[str, float], train_tokens: Mapping[str, int]) -> Dict[str, float]:
    """Per domain, the tokens trained on divided by the tokens the domain's training data holds (for
    windows drawn at random offsets: how many times each token was seen, on average)."""
    return {d: tokens[d] / train_tokens[d] for d in tokens if train_tokens.get(d)}


def logged(record: Mapping[str, Any]) -> Dict[str, float]:
    """The epochs per domain a metrics record holds (its ``epochs/<domain>`` values; {} for none)."""
    return {key[len(METRIC):]: value for key, value in record.items() if key.startswith(METRIC)}


def planned_epochs(weights: Mapping[str, float], train_tokens: Mapping[str, int], total_tokens: int) -> Dict[str, float]:
    """The epochs of each domain a run of ``total_tokens`` training tokens expects, its mixture
    ``weights`` (normalized) deciding each domain's share."""
    total_weight = sum(weights.values())
    return epochs({d: total_tokens * w / total_weight for d, w in weights.items() if w > 0}, train_tokens)


def repeated(epochs_by_domain: Mapping[str, float], limit: float = REPEATED_EPOCHS) -> Dict[str, float]:
    """The domains seen more than ``limit`` times, with their epochs."""
    return {d: e for d, e in epochs_by_domain.items() if e > limit}


def describe(epochs_by_domain: Mapping[str, float]) -> str:
    """'math 12.3, code 5.1': domains with their epochs, most repeated first."""
    ordered = sorted(epochs_by_domain.items(), key=lambda item: -item[1])
    return ", ".join(f"{d} {e:.3g}" for d, e in ordered)


def repeated_data_notes(runs: Iterable[Mapping[str, float]]) -> List[str]:
    """A report's note when some run (its epochs per domain) trained on a domain more than REPEATED_EPOCHS
    times, with the most epochs of each such domain; else none."""
    most: Dict[str, float] = {}
    for run in runs:
        for domain, value in repeated(run).items():
            most[domain] = max(value, most.get(domain, 0.0))
    if not most:
        return []
    return [f"Repeated data: runs shown trained on some domains more than {REPEATED_EPOCHS:g} times (most epochs: "
            f"{describe(most)}); past about {REPEATED_EPOCHS:g}, repeated tokens are worth less than fresh ones "
            "(Muennighoff et al. 2023), unlike the paper's runs, which see each token about once."]
