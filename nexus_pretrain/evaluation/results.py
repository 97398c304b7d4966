"""The results JSON of one evaluated checkpoint: run metadata, every metric, versions and task hashes."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import yaml

from nexus_pretrain.data.epochs import logged as logged_epochs
from nexus_pretrain.data.store import sha256_file
from nexus_pretrain.evaluation.benchmarks import TASKS_DIR, Benchmark, data_files, task_files
from nexus_pretrain.rundir.metrics_file import read_metrics
from nexus_pretrain.rundir.run_name import run_optimizer_label

SCHEMA = "nexus_pretrain.eval_results/1"


def task_hashes(benchmarks: Sequence[Benchmark], data_dir: Path,
                tasks_dir: Path = TASKS_DIR) -> Dict[str, Dict[str, str]]:
    """Per benchmark: sha256 of each task file (YAMLs, includes, utils.py) and of each data file it read."""
    out = {}
    for b in benchmarks:
        files = {f"tasks/{p.relative_to(tasks_dir)}": sha256_file(p) for p in task_files(b, tasks_dir)}
        if b.hub[0] and str(data_dir) == "hub":
            files["data/hub"] = f"{b.hub[0]}:{b.hub[1] or 'default'} (hub copy; not hashed)"
        for path in data_files(b, data_dir):
            name = path.name if b.name == "humaneval" else str(path.relative_to(Path(data_dir)))
            files[f"data/{name}"] = sha256_file(path)
        out[b.name] = files
    return out


def run_metadata(run_dir: Optional[Path], step: Optional[int] = None) -> Dict[str, Any]:
    """Config, optimizer, data mixture, step, tokens seen and epochs of each domain (data/epochs.py; {} for
    runs that did not log them) of a run (at ``step``, default its last)."""
    if run_dir is None:
        return {"run_dir": None, "run_name": None, "config": None, "optimizer": None, "model": None,
                "data_mixture": None, "step": step, "tokens": None, "epochs": {}}
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; is {run_dir} a nexus-train run directory?")
    config = yaml.safe_load(config_path.read_text())
    data = config.get("data", {})
    step, tokens, epochs = _progress(run_dir / "metrics.jsonl", step)
    return {
        "run_dir": str(run_dir.resolve()), "run_name": run_dir.name, "config": config,
        "optimizer": run_optimizer_label(run_dir), "model": config.get("model", {}).get("preset"),
        "data_mixture": {k: data.get(k) for k in ("name", "source", "domains", "fixed_shares", "ood_domains")},
        "step": step, "tokens": tokens, "epochs": epochs,
    }


def _progress(metrics_path: Path, step: Optional[int]) -> tuple:
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path} not found; the run logged no metrics")
    last_step, tokens, epochs = None, None, {}
    for row in read_metrics(metrics_path):
        if step is not None and row.get("step", 0) > step:
            break
        last_step = row.get("step", last_step)
        tokens = row.get("tokens", tokens)
        epochs = logged_epochs(row) or epochs
    return (step if step is not None else last_step), tokens, epochs


def benchmark_metrics(accuracy: Mapping[str, float], loss: Mapping[str, float],
                      columns: Sequence[str]) -> Dict[str, Any]:
    """Accuracy (percent) and downstream loss per column, with "All" the mean over the columns present."""
    acc = {c: accuracy[c] for c in columns if c in accuracy}
    los = {c: loss[c] for c in columns if c in loss}
    if acc:
        acc["All"] = sum(acc.values()) / len(acc)
    if los:
        los["All"] = sum(los.values()) / len(los)
    return {"accuracy": acc, "loss": los}


def build_results(meta: Mapping[str, Any], heldout: Mapping[str, float], accuracy: Mapping[str, float],
                  loss: Mapping[str, Any], columns: Sequence[str], harness: Optional[Mapping[str, Any]],
                  hashes: Mapping[str, Any], sandbox: Mapping[str, str], model_dir: Path) -> Dict[str, Any]:
    """The results document (see docs in the README); ``loss`` maps a column to a GoldLoss."""
    metrics = benchmark_metrics(accuracy, {c: g.loss for c, g in loss.items()}, columns)
    metrics["pretrain"] = heldout.get("val/pretrain")
    metrics["ood"] = heldout.get("ood/mean")
    metrics["heldout"] = dict(heldout)
    metrics["loss_tokens"] = {c: {"tokens": g.tokens, "examples": g.examples} for c, g in loss.items()}
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_dir": str(Path(model_dir).resolve()),
        **meta,
        "metrics": metrics,
        "lm_eval": None if harness is None else {
            "version": harness["lm_eval_version"], "settings": harness["config"], "results": harness["results"],
            "n_samples": harness["n_samples"], "task_versions": harness["versions"]},
        "task_hashes": dict(hashes),
        "sandbox": dict(sandbox),
    }


def write_results(results: Mapping[str, Any], path: Path) -> Path:
    """Write a results JSON (NaN/inf become null, as JSON has no such numbers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(results), indent=2, default=str) + "\n")
    return path


def load_results(path: Path) -> Dict[str, Any]:
    """Read a results JSON written by write_results, checking its schema."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    data = json.loads(path.read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a nexus-eval results JSON (schema {data.get('schema')!r}, expected {SCHEMA!r})")
    return data


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
