"""Where the package's non-Python assets live: the Hydra configs, the benchmark task folders, the report
table layouts and the data recipes.

A checkout keeps them at the repository's top level, beside ``nexus_pretrain/`` (an editable install runs
from there); a built wheel carries them inside the package under the same relative paths (setup.py copies
them in). :func:`asset_dir` finds them in either layout.
"""

from importlib import resources
from pathlib import Path

ASSETS = ("configs", "eval/tasks", "eval/tables", "data_pipelines/recipes")
"""The asset folders, as paths relative to the repository root (and to the package in a wheel)."""

PACKAGE_DIR = Path(str(resources.files(__package__)))
REPO_ROOT = PACKAGE_DIR.parent
"""The repository's root when running from a checkout (editable install); scripts and tests use it."""


def asset_dir(name: str) -> Path:
    """The asset folder ``name`` (one of ASSETS): inside the installed package, else in the checkout."""
    if name not in ASSETS:
        raise ValueError(f"unknown asset folder {name!r}; one of {', '.join(ASSETS)}")
    packaged = PACKAGE_DIR / name
    return packaged if packaged.is_dir() else REPO_ROOT / name


CONFIG_DIR = asset_dir("configs")
"""The Hydra config tree (train.yaml and its groups)."""

if not (CONFIG_DIR / "train.yaml").is_file():  # pragma: no cover - only on a broken install
    raise ImportError(f"Hydra configs not found at {CONFIG_DIR}; reinstall nexus_pretrain (`pip install .`)")
