"""A finished run's final metrics and optimizer, from its metrics.jsonl and config.yaml (report/sweep.py
compares runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import yaml

from nexus_pretrain.train.metrics_file import METRICS_FILE, read_metrics
from nexus_pretrain.train.run_name import optimizer_label as label_of


def final_metrics(run_dir: Path) -> Dict[str, float]:
    """The last value of every metric a run logged."""
    merged: Dict[str, float] = {}
    for record in read_metrics(Path(run_dir) / METRICS_FILE):
        merged.update(record)
    return merged


def optimizer_label(run_dir: Path) -> str:
    """adamw, muon, nexus(adamw) or nexus_dot(adamw), ... from the run's saved config."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return "?"
    return label_of(yaml.safe_load(path.read_text())["optim"])
