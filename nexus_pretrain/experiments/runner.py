"""Planning, training (nexus-train in a subprocess) and evaluating (the evaluation stage) a table's runs.

A run's directory is RUN_ROOT/SCALE/<preset>-<optimizer>-<data>-<schedule>-<steps>-<hash>/seed<S>, where
the hash is of the composed config without run_dir and seed: rows of different tables that are the same
config (e.g. the 3B AdamW run of Tables 1, 2, 3, 7, 9 and 10) share one directory and are trained once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from nexus_pretrain.experiments.files import compose_many, experiment_name
from nexus_pretrain.experiments.registry import RowRun, TableSpec

DEFAULT_LAUNCHER = (sys.executable, "-m", "nexus_pretrain")


@dataclass
class PlannedRun:
    """One training run of one table row at one seed."""

    row: RowRun
    overrides: List[str]  # +experiment=..., the sweep point, extra overrides (no seed, no run_dir)
    seed: int
    run_dir: Path

    def train_command(self, launcher: Sequence[str] = DEFAULT_LAUNCHER) -> List[str]:
        cmd = [*launcher, *self.overrides, f"trainer.seed={self.seed}", f"trainer.run_dir={self.run_dir}",
               "logging.progress_bar=false"]
        if (self.run_dir / "checkpoints").is_dir():
            cmd.append("trainer.resume=auto")
        return cmd

    @property
    def trained(self) -> bool:
        """Whether training finished (the final model was exported to RUN_DIR/hf)."""
        return (self.run_dir / "hf" / "config.json").is_file()


def _optimizer_label(cfg) -> str:
    return cfg.optim.name if cfg.optim.name != "nexus" else f"{cfg.optim.variant}({cfg.optim.outer})"


def config_key(cfg) -> str:
    """Readable name plus an 8-hex hash of the composed config (run_dir and seed left out)."""
    data = dataclasses.asdict(cfg)
    data["trainer"].pop("run_dir", None)
    data["trainer"].pop("seed", None)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]
    label = _optimizer_label(cfg).replace("(", "_").replace(")", "")
    name = f"{cfg.model.preset}-{label}-{cfg.data.name}-{cfg.schedule.name}-{cfg.trainer.max_steps}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{digest}")


def plan_runs(spec: TableSpec, scale: str, seeds: Sequence[int], run_root: Path,
              extra_overrides: Sequence[str] = (), groups: Optional[Sequence[str]] = None) -> List[PlannedRun]:
    """Every (row, seed) of a table, with its overrides and run directory (composes each row's config once)."""
    rows = [r for r in spec.rows if groups is None or r.group in groups]
    if not rows:
        raise ValueError(f"{spec.name}: no rows in groups {list(groups or [])}; groups are {spec.groups()}")
    override_lists = [[f"+experiment={experiment_name(r.experiment, scale)}", *r.overrides, *extra_overrides]
                      for r in rows]
    configs = compose_many(override_lists)
    runs = []
    for row, overrides, cfg in zip(rows, override_lists, configs):
        key = config_key(cfg)
        runs += [PlannedRun(row, overrides, int(s), Path(run_root).resolve() / scale / key / f"seed{s}") for s in seeds]
    return runs


def train(run: PlannedRun, launcher: Sequence[str] = DEFAULT_LAUNCHER, quiet: bool = True) -> None:
    """Train one run with nexus-train (skipped when already finished; resumed when checkpoints exist).

    Output goes to RUN_DIR/reproduce_train.log when ``quiet``; a failure raises RuntimeError with its tail.
    """
    if run.trained:
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    cmd = run.train_command(launcher)
    log = run.run_dir / "reproduce_train.log"
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out if quiet else None, stderr=subprocess.STDOUT if quiet else None)
    if proc.returncode != 0 or not run.trained:
        tail = log.read_text()[-2000:] if quiet and log.is_file() else ""
        raise RuntimeError(f"training failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def results_files(run_dir: Path) -> List[Path]:
    """RUN_DIR/eval/results_step<N>.json, by step."""
    files = list((Path(run_dir) / "eval").glob("results_step*.json"))
    return sorted(files, key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))


def evaluate(run: PlannedRun, data_dir: Optional[Path] = None, tasks: Sequence[str] = (),
             limit: Optional[int] = None, device: str = "cpu", force: bool = False) -> Dict[str, Any]:
    """The results document of a trained run's final model, written to RUN_DIR/eval/results_step<N>.json.

    Without ``data_dir`` only the held-out pretrain and OOD losses are measured (the --scale tiny default);
    with it, the full evaluation stage (lm-eval accuracies and downstream losses on the local benchmarks).
    An existing results file is reused unless ``force``.
    """
    from nexus_pretrain.evaluation.results import load_results, write_results

    existing = results_files(run.run_dir)
    if existing and not force:
        return load_results(existing[-1])
    tag = run.row.tag
    if data_dir is None:
        from nexus_pretrain.evaluation.heldout import run_heldout_losses
        from nexus_pretrain.evaluation.results import build_results, run_metadata

        meta = {**run_metadata(run.run_dir), "tag": tag}
        heldout = run_heldout_losses(run.run_dir, run.run_dir / "hf", device=device)
        results = build_results(meta, heldout, {}, {}, [], None, {}, {}, run.run_dir / "hf")
    else:
        from nexus_pretrain.evaluation.stage import EvalSettings, evaluate_checkpoint

        settings = EvalSettings(tasks=list(tasks), data_dir=Path(data_dir), limit=limit, device=device)
        results = evaluate_checkpoint(run.run_dir, settings, tag=tag)
    write_results(results, run.run_dir / "eval" / f"results_step{results['step']}.json")
    return results


def collect(run: PlannedRun) -> Optional[Dict[str, Any]]:
    """The newest results document of a run, or None if it was not evaluated."""
    from nexus_pretrain.evaluation.results import load_results

    files = results_files(run.run_dir)
    return load_results(files[-1]) if files else None
