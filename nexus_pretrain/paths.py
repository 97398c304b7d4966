"""Where the repository's non-Python assets live."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
"""The Hydra config tree (the package is installed editable, so it sits beside nexus_pretrain/)."""

if not (CONFIG_DIR / "train.yaml").is_file():  # pragma: no cover - only on a broken install
    raise ImportError(f"Hydra configs not found at {CONFIG_DIR}; install from a checkout with `pip install -e .`")
