"""Command-line overrides whose dict value is the whole map: ``'data.domains={cooking: 0.7, law: 0.3}'``.

Hydra merges a dict given on the command line into the config's dict, so the preset's domains (web, math,
code) would stay beside the user's, and a key the preset lacks is refused in struct mode. For the maps
below a dict value instead *replaces* the map: the override reaches Hydra as ``++key=value`` (which may add
keys) and the composed config's map is then set to exactly the given dict. ``+data.domains.cooking=1.0``
(one key) still adds to the map.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from nexus_pretrain.config import register_configs
from nexus_pretrain.paths import CONFIG_DIR

MAP_KEYS = ("data.domains", "data.fixed_shares")


def _split(override: str) -> tuple:
    """(key, value) of ``[+|++]key=value``; key '' for deletions and group overrides."""
    if override.startswith("~"):
        return "", ""
    key, eq, value = override.lstrip("+").partition("=")
    return (key, value) if eq else ("", "")


def replacing(overrides: Sequence[str]) -> List[str]:
    """The overrides with each dict-valued map override written as ``++key=value`` (Hydra then accepts keys
    the preset's map lacks); every other override unchanged."""
    out = []
    for override in overrides:
        key, value = _split(override)
        out.append(f"++{key}={value}" if key in MAP_KEYS and value.lstrip().startswith("{") else override)
    return out


def given_maps(overrides: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """The dict each map key is given by one run's overrides (the last one wins)."""
    chosen = [o for o in overrides if _split(o)[0] in MAP_KEYS and _split(o)[1].lstrip().startswith("{")]
    maps: Dict[str, Dict[str, float]] = {}
    for parsed in OverridesParser.create().parse_overrides(chosen):
        value = parsed.value()
        if not isinstance(value, dict):  # a sweep (-m) is split into single dicts before a run starts
            continue
        # Hydra has already checked the values against the schema (floats) while merging the same override.
        maps[parsed.key_or_group] = {str(name): float(weight) for name, weight in value.items()}
    return maps


def apply_maps(cfg: Any, overrides: Sequence[str]) -> Any:
    """Set each map the overrides give to exactly that dict on a composed TrainConfig; returns cfg."""
    for key, value in given_maps(overrides).items():
        section, name = key.split(".")
        setattr(getattr(cfg, section), name, value)
    return cfg


def compose(overrides: Sequence[str]) -> Any:
    """The TrainConfig that ``nexus-train OVERRIDES`` runs with (configs/train.yaml, maps replaced)."""


    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(hydra_compose("train", overrides=replacing(overrides)))
    return apply_maps(cfg, overrides)
