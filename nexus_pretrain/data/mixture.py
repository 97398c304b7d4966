"""Mixture presets: fix some domains' sampling shares and scale the others to fill the rest."""

from __future__ import annotations

from typing import Dict, Mapping


def apply_fixed_shares(weights: Mapping[str, float], shares: Mapping[str, float]) -> Dict[str, float]:
    """Normalized weights where each domain in `shares` has exactly its share (paper Sec. 4.3, Math10/40/70).

    The remaining 1 - sum(shares) is split among the other domains in proportion to their weights.
    """
    for name, share in shares.items():
        if name not in weights:
            raise ValueError(f"data.fixed_shares.{name}: not in data.domains ({', '.join(weights)}); "
                             "add it to data.domains or remove it")
        if share < 0:
            raise ValueError(f"data.fixed_shares.{name}={share} must be >= 0")
    for name, weight in weights.items():
        if weight < 0:
            raise ValueError(f"data.domains.{name}={weight} must be >= 0")
    fixed = sum(shares.values())
    if fixed >= 1:
        raise ValueError(f"data.fixed_shares sum to {fixed:g}; they must sum to less than 1")
    others = {name: w for name, w in weights.items() if name not in shares}
    rest = sum(others.values())
    if rest <= 0:
        raise ValueError("data.fixed_shares leave no other domain with a positive weight to fill "
                         f"the remaining {1 - fixed:g}; give another domain in data.domains a positive weight")
    result = {name: w / rest * (1 - fixed) for name, w in others.items()}
    result.update(shares)
    return {name: result[name] for name in weights}
