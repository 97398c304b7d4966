"""The experiment files in configs/experiment/: names, sweep grids, token budgets and composition."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nexus_pretrain.config import register_configs
from nexus_pretrain.data.chinchilla import chinchilla_tokens, steps_for
from nexus_pretrain.paths import CONFIG_DIR

EXPERIMENT_DIR = CONFIG_DIR / "experiment"
SCALES = ("paper", "tiny")


def experiment_name(name: str, scale: str) -> str:
    """The +experiment= value of an experiment at a scale: ``name`` (paper) or ``tiny/name``."""
    if scale not in SCALES:
        raise ValueError(f"--scale {scale!r} is not one of {', '.join(SCALES)}")
    return name if scale == "paper" else f"tiny/{name}"


def experiment_path(name: str, scale: str = "paper") -> Path:
    """configs/experiment/[tiny/]NAME.yaml (FileNotFoundError if absent)."""
    path = EXPERIMENT_DIR / f"{experiment_name(name, scale)}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return path


def experiment_names(scale: str = "paper") -> List[str]:
    """Names of the experiments at a scale (without the tiny/ prefix)."""
    folder = EXPERIMENT_DIR if scale == "paper" else EXPERIMENT_DIR / "tiny"
    return sorted(p.stem for p in folder.glob("*.yaml"))


def sweep_params(name: str, scale: str = "paper") -> Dict[str, List[str]]:
    """The file's hydra.sweeper.params as {override key: [values]} (Hydra's comma-separated syntax)."""
    raw = yaml.safe_load(experiment_path(name, scale).read_text()) or {}
    params = ((raw.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    return {str(k): [v.strip() for v in str(vals).split(",")] for k, vals in params.items()}


def sweep_points(name: str, scale: str = "paper") -> List[Dict[str, str]]:
    """Every point of the file's grid (the runs of `nexus-train -m +experiment=NAME`), in Hydra's order."""
    params = sweep_params(name, scale)
    keys = list(params)
    return [dict(zip(keys, values)) for values in itertools.product(*(params[k] for k in keys))]


@dataclass(frozen=True)
class BudgetSpec:
    """The token budget an experiment file declares in its ``# budget:`` comment line: the paper's stated
    tokens where it states them (``tokens=``), else the 20 x N Chinchilla helper's at ``multiplier``."""

    preset: str
    multiplier: float
    global_batch: int
    seq_len: int
    paper_tokens: Optional[int] = None

    def helper_tokens(self) -> int:
        """20 x non-embedding parameters x multiplier (nexus_pretrain.data.chinchilla)."""
        return chinchilla_tokens(self.preset, self.multiplier)

    def tokens(self) -> int:
        """The budget the file trains for: the paper's tokens if stated, else the helper's."""
        return self.paper_tokens if self.paper_tokens is not None else self.helper_tokens()

    def max_steps(self, tokens: Optional[int] = None) -> int:
        """ceil(tokens / (global_batch x seq_len)), tokens defaulting to :meth:`tokens`."""
        return steps_for(self.tokens() if tokens is None else tokens, self.global_batch, self.seq_len)


_BUDGET = re.compile(r"^# budget: preset=(\S+) multiplier=(\S+) global_batch=(\d+) seq_len=(\d+)"
                     r"(?: tokens=([\d_]+))?\s*$", re.M)


def budget_spec(name: str, scale: str = "paper") -> BudgetSpec:
    """The ``# budget: preset=P multiplier=M global_batch=B seq_len=S [tokens=T]`` line of a paper-scale file."""
    path = experiment_path(name, scale)
    found = _BUDGET.search(path.read_text())
    if not found:
        raise ValueError(f"{path}: no '# budget: preset=... multiplier=... global_batch=... seq_len=... "
                         "[tokens=...]' line")
    preset, mult, batch, seq, tokens = found.groups()
    return BudgetSpec(preset, float(mult), int(batch), int(seq), int(tokens) if tokens else None)


def point_overrides(point: Dict[str, str]) -> List[str]:
    """A sweep point as Hydra overrides, e.g. {'optim': 'nexus'} -> ['optim=nexus']."""
    return [f"{k}={v}" for k, v in point.items()]


def compose_many(override_lists: Sequence[Sequence[str]]):
    """The TrainConfig of each override list (one Hydra initialization for all; faster than one each)."""


    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return [OmegaConf.to_object(compose("train", overrides=list(o))) for o in override_lists]
