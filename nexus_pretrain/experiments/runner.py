"""Planning, training (nexus-train, in a subprocess or in this process) and evaluating (the evaluation
stage) a table's runs.

A run's directory is RUN_ROOT/SCALE/<preset>-<optimizer>-<data>-<schedule>-<steps>-<hash>/seed<S>, where
the hash is of the composed config without run_dir and seed: rows of different tables that are the same
config (e.g. the 3B AdamW run of Tables 1, 2, 3, 7, 9 and 10) share one directory and are trained once.
A fine-tuning row (Table 11) trains its base run like any other, then itself from the base's weights in
RUN_ROOT/SCALE/<its key>/from-<base key>/seed<S>; a row scoring the base before fine-tuning keeps its
results in that directory's pre_sft/.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO

from nexus_pretrain.evaluation.heldout import data_heldout_losses, run_heldout_losses
from nexus_pretrain.evaluation.results import build_results, load_results, run_metadata, write_results
from nexus_pretrain.evaluation.stage import EvalSettings, evaluate_checkpoint
from nexus_pretrain.experiments.files import compose_many, experiment_name
from nexus_pretrain.experiments.registry import RowRun, TableSpec
from nexus_pretrain.train.trainer import Trainer

DEFAULT_LAUNCHER = (sys.executable, "-m", "nexus_pretrain")
IN_PROCESS = ()  # the launcher that trains in this process (train_in_process) instead of a new interpreter


@dataclass
class PlannedRun:
    """One training run of one table row at one seed."""
    row: RowRun
    overrides: List[str]  # +experiment=..., the sweep point, extra overrides (no seed, no run_dir)
    seed: int
    run_dir: Path
    base: Optional["PlannedRun"] = None  # the pretraining run a fine-tuning row starts from (or scores)
    config: Any = None  # the composed TrainConfig (without seed and run_dir)

    def init_from(self) -> Path:
        """The base weights a fine-tuning run starts from: the base's checkpoint at row.init_step when it
        was kept, else the base's final model."""
        assert self.base is not None
        if self.row.init_step is not None:
            checkpoint = self.base.run_dir / "checkpoints" / f"step_{self.row.init_step:08d}"
            if checkpoint.is_dir():
                return checkpoint
            if self.base.trained and self.base.config is not None \
                    and self.base.config.trainer.max_steps > self.row.init_step:
                warnings.warn(f"{checkpoint} was not kept (trainer.keep_last); fine-tuning from the base's final "
                              f"model instead of step {self.row.init_step}", stacklevel=2)
        return self.base.run_dir / "hf"

    def train_command(self, launcher: Sequence[str] = DEFAULT_LAUNCHER) -> List[str]:
        cmd = [*launcher, *self.overrides, f"trainer.seed={self.seed}", f"trainer.run_dir={self.run_dir}",
               "logging.progress_bar=false"]
        if self.base is not None:
            cmd.append(f"trainer.init_from={self.init_from()}")
        if (self.run_dir / "checkpoints").is_dir() or (self.run_dir / "metrics.jsonl").is_file():
            cmd.append("trainer.resume=auto")  # an earlier attempt: continue it (or restart it, if it saved nothing)
        return cmd

    @property
    def trained(self) -> bool:
        """Whether training finished (the final model was exported to RUN_DIR/hf); for a row that only
        scores its base model, whether the base finished."""
        if self.row.evaluate_only:
            return self.base.trained
        return (self.run_dir / "hf" / "config.json").is_file()


def _optimizer_label(cfg) -> str:
    return cfg.optim.name if cfg.optim.name != "nexus" else f"{cfg.optim.variant}({cfg.optim.outer})"


def config_key(cfg) -> str:
    """Readable name plus an 8-hex hash of the composed config (run_dir and seed left out)."""
    data = dataclasses.asdict(cfg)
    data["trainer"].pop("run_dir", None)
    data["trainer"].pop("seed", None)
    # Fields added for fine-tuning, left out while unused so that pretraining runs keep their directories.
    if data["trainer"].get("init_from") is None:
        data["trainer"].pop("init_from", None)
    if data["data"].get("source") != "sft":
        data["data"].pop("sft", None)
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
    base_lists = [[f"+experiment={experiment_name(r.base[0], scale)}", *[f"{k}={v}" for k, v in r.base[1]],
                   *extra_overrides] for r in rows if r.base is not None]
    configs = compose_many(override_lists + base_lists)
    bases = iter(zip(base_lists, configs[len(rows):]))
    root = Path(run_root).resolve() / scale
    runs = []
    for row, overrides, cfg in zip(rows, override_lists, configs):
        key = config_key(cfg)
        if row.base is None:
            runs += [PlannedRun(row, overrides, int(s), root / key / f"seed{s}", config=cfg) for s in seeds]
            continue
        base_overrides, base_cfg = next(bases)
        base_key = config_key(base_cfg)
        base_row = RowRun(row.group, row.row, row.base[0], row.base[1], None)
        for s in seeds:
            base = PlannedRun(base_row, base_overrides, int(s), root / base_key / f"seed{s}", config=base_cfg)
            run_dir = root / key / f"from-{base_key}" / f"seed{s}"
            if row.evaluate_only:  # scores the base model on this row's data; its results live beside the run's
                run_dir = run_dir / "pre_sft"
            runs.append(PlannedRun(row, overrides, int(s), run_dir, base=base, config=cfg))
    return runs


def training_waves(runs: Sequence[PlannedRun]) -> List[List[PlannedRun]]:
    """The untrained runs to train, in waves that may each run in parallel: pretraining runs (bases
    included) first, then the runs fine-tuned from them; every run directory appears once."""
    first = {str(r.run_dir): r for r in [*(r.base for r in runs if r.base is not None),
                                         *(r for r in runs if r.base is None)] if not r.trained}
    second = {str(r.run_dir): r for r in runs if r.base is not None and not r.row.evaluate_only and not r.trained}
    return [list(wave.values()) for wave in (first, second) if wave]


def train(run: PlannedRun, launcher: Sequence[str] = DEFAULT_LAUNCHER, quiet: bool = True) -> None:
    """Train one run with nexus-train (skipped when already finished; resumed when checkpoints exist), in a
    subprocess started by ``launcher``, or in this process with the empty launcher IN_PROCESS.

    Output goes to RUN_DIR/reproduce_train.log when ``quiet``; a failure raises RuntimeError with its tail.
    """
    if run.base is not None:
        train(run.base, launcher, quiet)
    if run.trained:
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    cmd = run.train_command(launcher)
    log = run.run_dir / "reproduce_train.log"
    with open(log, "w") as out:
        if launcher:
            stdout, stderr = (out, subprocess.STDOUT) if quiet else (None, None)
            code = subprocess.run(cmd, stdout=stdout, stderr=stderr).returncode
        else:
            code = train_in_process(cmd, out if quiet else None)
    if code != 0 or not run.trained:
        tail = log.read_text()[-2000:] if quiet and log.is_file() else ""
        raise RuntimeError(f"training failed (exit {code}): {' '.join(cmd)}\n{tail}")


def train_in_process(argv: Sequence[str], out: Optional[TextIO] = None) -> int:
    """Train in this process on nexus-train's overrides ``argv``: the config Hydra composes from them, run by
    the trainer as nexus-train runs it (without Hydra's .hydra/ record and log file); the exit status, 1
    with the traceback written out on an error. Output goes to ``out`` when given."""


    with contextlib.ExitStack() as stack:
        if out is not None:
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        try:
            (cfg,) = compose_many([argv])
            trainer = Trainer(cfg)
            try:
                trainer.fit()
            finally:
                trainer.close()
        except Exception:  # reported like a failed subprocess: exit status and log tail
            traceback.print_exc()
            return 1
    return 0


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

    existing = results_files(run.run_dir)
    if existing and not force:
        return load_results(existing[-1])
    tag = run.row.tag
    if run.row.evaluate_only:
        results = _as_row_results(run, _evaluate_base_on_row_data(run, data_dir, tasks, limit, device))
    elif data_dir is None:
        meta = {**run_metadata(run.run_dir), "tag": tag}
        heldout = run_heldout_losses(run.run_dir, run.run_dir / "hf", device=device)
        results = build_results(meta, heldout, {}, {}, [], None, {}, {}, run.run_dir / "hf")
    else:
        settings = EvalSettings(tasks=list(tasks), data_dir=Path(data_dir), limit=limit, device=device)
        results = evaluate_checkpoint(run.run_dir, settings, tag=tag)
    write_results(results, run.run_dir / "eval" / f"results_step{results['step']}.json")
    return results


def collect(run: PlannedRun) -> Optional[Dict[str, Any]]:
    """The newest results document of a run, or None if it was not evaluated."""
    files = results_files(run.run_dir)
    return load_results(files[-1]) if files else None


def _evaluate_base_on_row_data(run: PlannedRun, data_dir: Optional[Path], tasks: Sequence[str], limit: Optional[int],
                               device: str) -> Dict[str, Any]:
    """The results document of a row's base model (pre-SFT) with its held-out losses taken on the row's data
    (val/sft, the SFT loss, as the pretrain cell) and its benchmarks, if any, as usual."""

    base_dir, model_dir = run.base.run_dir, run.base.run_dir / "hf"
    heldout = data_heldout_losses(run.config.data, run.seed, model_dir, device=device)
    if data_dir is None:
        meta = {**run_metadata(base_dir), "tag": run.row.tag}
        return build_results(meta, heldout, {}, {}, [], None, {}, {}, model_dir)

    settings = EvalSettings(tasks=list(tasks), data_dir=Path(data_dir), limit=limit, device=device, heldout=False)
    results = evaluate_checkpoint(base_dir, settings, tag=run.row.tag)
    results["metrics"].update(pretrain=heldout.get("val/pretrain"), ood=heldout.get("ood/mean"), heldout=heldout)
    return results


def _as_row_results(run: PlannedRun, results: Dict[str, Any]) -> Dict[str, Any]:
    """A base model's results filed under the row's directory (tables match rows by run_dir); the base
    run's directory is kept as base_run_dir."""
    return {**results, "run_dir": str(run.run_dir), "base_run_dir": results.get("run_dir")}
