"""What a run is called in experiment trackers: experiment, optimizer, mixture and seed.

A run's name is ``<experiment>-<optimizer>-<mixture>-s<seed>``, e.g. ``mixture-nexus(adamw)-math40-s1``,
where the experiment is the ``+experiment=`` file it was launched with (else its model preset) and the
mixture the data preset, with the domain weights when the command line set them. The runs of one Hydra
sweep (-m) share one group, named after the sweep's directory; a run launched on its own is grouped with
its other seeds (its name without the seed). The command line's overrides become tags and config
(train.metrics starts the W&B run with them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping

import yaml

MAX_TAG = 64  # W&B refuses longer tags


def optimizer_label(optim: Mapping[str, Any]) -> str:
    """adamw, muon, nexus(adamw), nexus_dot(adamw), nsgd(muon), ... from a run's optim config."""
    return optim["name"] if optim["name"] != "nexus" else f"{optim['variant']}({optim['outer']})"


def run_optimizer_label(run_dir: Path) -> str:
    """optimizer_label of a run directory's saved config, '?' when it has none."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return "?"
    return optimizer_label(yaml.safe_load(path.read_text())["optim"])


def run_overrides(run_dir: Path) -> List[str]:
    """The command-line overrides of a run launched by nexus-train (Hydra's record), [] for others."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    return [str(o) for o in yaml.safe_load(path.read_text()) or []] if path.is_file() else []


def _value(overrides: List[str], key: str) -> str:
    """The value of the last override of ``key`` (any + prefix), '' when none sets it."""
    found = [o.partition("=")[2] for o in overrides if o.lstrip("+").partition("=")[0] == key]
    return found[-1] if found else ""


def sweep_dir(run_dir: Path) -> Path | None:
    """The directory of the Hydra sweep a run belongs to (it holds multirun.yaml), None for a single run."""
    parent = Path(run_dir).resolve().parent
    return parent if (parent / "multirun.yaml").is_file() else None


def run_identity(run_config: Mapping[str, Any], run_dir: Path) -> Dict[str, Any]:
    """name, group, tags and overrides of a run (module docstring)."""
    overrides = run_overrides(run_dir)
    experiment = _value(overrides, "experiment").replace("/", "_") or run_config["model"]["preset"]
    data = run_config["data"]
    mixture = data["name"]
    if any(o.lstrip("+").startswith(("data.domains", "data.fixed_shares")) for o in overrides):
        weights = {**data["domains"], **data.get("fixed_shares", {})}
        mixture += "[" + ",".join(f"{d}:{w:g}" for d, w in weights.items()) + "]"
    base = f"{experiment}-{optimizer_label(run_config['optim'])}-{mixture}"
    sweep = sweep_dir(run_dir)
    tags = [o for o in overrides if len(o) <= MAX_TAG and not o.startswith(("trainer.run_dir=", "hydra."))]
    return {"name": f"{base}-s{run_config['trainer']['seed']}",
            "group": f"{experiment}-sweep-{sweep.name}" if sweep else base,
            "tags": tags, "overrides": overrides}
