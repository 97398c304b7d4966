"""The experiment files in configs/experiment/: names, sweep grids, Chinchilla budgets and composition."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import yaml

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
class ChinchillaSpec:
    """The budget an experiment file declares in its ``# chinchilla:`` comment line."""

    preset: str
    multiplier: float
    global_batch: int
    seq_len: int

    def tokens(self) -> int:
        from nexus_pretrain.data.chinchilla import chinchilla_tokens

        return chinchilla_tokens(self.preset, self.multiplier)

    def max_steps(self) -> int:
        """ceil(tokens / (global_batch x seq_len)) with tokens from nexus_pretrain.data.chinchilla."""
        from nexus_pretrain.data.chinchilla import steps_for

        return steps_for(self.tokens(), self.global_batch, self.seq_len)


_CHINCHILLA = re.compile(r"^# chinchilla: preset=(\S+) multiplier=(\S+) global_batch=(\d+) seq_len=(\d+)\s*$", re.M)


def chinchilla_spec(name: str, scale: str = "paper") -> ChinchillaSpec:
    """The ``# chinchilla: preset=P multiplier=M global_batch=B seq_len=S`` line of a paper-scale file."""
    path = experiment_path(name, scale)
    found = _CHINCHILLA.search(path.read_text())
    if not found:
        raise ValueError(f"{path}: no '# chinchilla: preset=... multiplier=... global_batch=... seq_len=...' line")
    preset, mult, batch, seq = found.groups()
    return ChinchillaSpec(preset, float(mult), int(batch), int(seq))


def point_overrides(point: Dict[str, str]) -> List[str]:
    """A sweep point as Hydra overrides, e.g. {'optim': 'nexus'} -> ['optim=nexus']."""
    return [f"{k}={v}" for k, v in point.items()]


def compose_many(override_lists: Sequence[Sequence[str]]):
    """The TrainConfig of each override list (one Hydra initialization for all; faster than one each)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from nexus_pretrain.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return [OmegaConf.to_object(compose("train", overrides=list(o))) for o in override_lists]
