"""Final losses of finished runs, side by side, from their metrics.jsonl and config.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml


def final_metrics(run_dir: Path) -> Dict[str, float]:
    """The last value of every metric a run logged."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {run_dir} a nexus-train run directory?")
    merged: Dict[str, float] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            merged.update(json.loads(line))
    return merged


def optimizer_label(run_dir: Path) -> str:
    """adamw, muon, nexus(adamw) or nexus_dot(adamw), ... from the run's saved config."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return "?"
    optim = yaml.safe_load(path.read_text())["optim"]
    if optim["name"] != "nexus":
        return optim["name"]
    return f"{optim['variant']}({optim['outer']})"


def compare_runs(run_dirs: Sequence[Path], baseline: Optional[str] = None) -> str:
    """A Markdown table: optimizer, steps, train loss, per-domain validation, pretrain and OOD loss.

    With a baseline run, a Δ row under each other run gives baseline minus run (positive = better).
    """
    finals = [final_metrics(d) for d in run_dirs]
    domains = sorted({k[4:] for f in finals for k in f if k.startswith("val/") and k != "val/pretrain"})
    columns = ["loss"] + [f"val/{d}" for d in domains] + ["val/pretrain", "ood/mean"]
    headers = ["run", "optimizer", "step", "train loss"] + [f"val {d}" for d in domains] + ["pretrain", "OOD"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    base = final_metrics(Path(baseline)) if baseline else None

    def cells(values: Dict[str, float], fmt: str) -> List[str]:
        return [fmt.format(values[c]) if c in values else "—" for c in columns]

    for run_dir, final in zip(run_dirs, finals):
        row = [Path(run_dir).name, optimizer_label(run_dir), str(int(final.get("step", 0)))] + cells(final, "{:.4f}")
        lines.append("| " + " | ".join(row) + " |")
        if base is not None and Path(run_dir).resolve() != Path(baseline).resolve():
            delta = {c: base[c] - final[c] for c in columns if c in base and c in final}
            lines.append("| " + " | ".join(["Δ vs baseline", "", ""] + cells(delta, "{:+.4f}")) + " |")
    return "\n".join(lines)
