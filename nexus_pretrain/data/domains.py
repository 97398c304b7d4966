"""The domains a run names against the domains its prepared shards hold, checked before anything loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from nexus_pretrain.errors import ConfigError
from nexus_pretrain.data import store


def prepared_domains(root: Path) -> Dict[str, bool]:
    """Every completely prepared domain under ``root`` and whether it is evaluation-only (OOD)."""
    found = {}
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        manifest = store.read_manifest(root, folder.name) if folder.is_dir() else None
        if manifest and manifest.get("complete"):
            found[folder.name] = bool(manifest.get("ood"))
    return found


def describe(found: Dict[str, bool]) -> str:
    """'train domains a, b; OOD domains c' for a prepared_domains result."""
    train = [d for d, ood in found.items() if not ood]
    ood = [d for d, is_ood in found.items() if is_ood]
    parts = [f"train domains {', '.join(train)}" if train else "", f"OOD domains {', '.join(ood)}" if ood else ""]
    return "; ".join(p for p in parts if p) or "no prepared domain"


def _suggest(found: Dict[str, bool]) -> str:
    train = [d for d, ood in found.items() if not ood]
    return f"set 'data.domains={{{', '.join(f'{d}: 1.0' for d in train)}}}' " if train else ""


def check_prepared(data: Any) -> None:
    """ConfigError (one line naming what the shards hold) when data.source=shards names a training domain
    with positive weight that is not prepared for training under data.path, or an OOD domain not prepared."""
    if data.source != "shards" or not data.path:
        return
    root = Path(data.path)
    if not root.is_dir():
        raise ConfigError(f"data.path={data.path}: no such folder; prepare your files into it with "
                          f"`nexus-data prepare DOMAIN=FILES ... --out {data.path}`")
    found = prepared_domains(root)
    trained = [d for d, w in data.domains.items() if w > 0]
    missing = [d for d in trained if d not in found]
    if missing:
        raise ConfigError(f"data.domains: {', '.join(missing)} not prepared under {data.path}, which holds "
                          f"{describe(found)}; {_suggest(found)}or prepare {missing[0]} with "
                          f"`nexus-data prepare {missing[0]}=FILES --out {data.path}`")
    evaluation_only = [d for d in trained if found[d]]
    if evaluation_only:
        raise ConfigError(f"data.domains: {', '.join(evaluation_only)} prepared as OOD (evaluation only) under "
                          f"{data.path}, which holds {describe(found)}; move it to data.ood_domains")
    missing_ood = [d for d in data.ood_domains if d not in found]
    if missing_ood:
        raise ConfigError(f"data.ood_domains: {', '.join(missing_ood)} not prepared under {data.path}, which holds "
                          f"{describe(found)}; set data.ood_domains to some of those, or [] for none")
