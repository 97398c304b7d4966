"""nexus-analyze: the paper's Sec. 5.1 analyses over run checkpoints, and metrics at matched pretraining loss.

    nexus-analyze cosine RUN_DIR|CHECKPOINT... --tasks gsm8k,math500 --data-dir DIR --out DIR
    nexus-analyze closeness RUN_DIR|CHECKPOINT --tasks gsm8k --data-dir DIR [--domains web,legal] --steps 100 --out DIR
    nexus-analyze landscape RUN_DIR|CHECKPOINT --tasks gsm8k --data-dir DIR --grid 11 --out DIR
    nexus-analyze fig7a RUN_DIR|CHECKPOINT... --tasks gsm8k --data-dir DIR --out DIR
    nexus-analyze isoloss RUN... --baseline RUN... --metric ood/mean [--levels] --out DIR

A run directory stands for all its checkpoints (cosine, fig7a) or its newest one (closeness, landscape);
for isoloss, a run stands for its fully decayed endpoints (its own and its cooldown branches') and a
directory of runs (a sweep's) for its runs.
Each writes a JSON (and figures) under --out and prints a short summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from nexus_pretrain import eval_command
from nexus_pretrain.analysis import isoloss, isoloss_report
from nexus_pretrain.analysis import landscape as ls
from nexus_pretrain.analysis.closeness import GDSettings, parameter_closeness
from nexus_pretrain.analysis.downstream_cosine import cosines_over_checkpoints
from nexus_pretrain.analysis.sources import (downstream_sequences, flat_parameters, load_checkpoint_model,
                                             resolve_checkpoints, training_set)
from nexus_pretrain.console import show
from nexus_pretrain.evaluation.benchmarks import BENCHMARKS, select
from nexus_pretrain.evaluation.results import load_results
from nexus_pretrain.extras import MissingExtra
from nexus_pretrain.report.plots import downstream_vs_pretrain

log = logging.getLogger(__name__)

PROG = "nexus-analyze"


def _common(p: argparse.ArgumentParser, tasks_required: bool) -> None:
    p.add_argument("--tasks", required=tasks_required, default=None,
                   help=f"comma-separated downstream benchmarks: {','.join(BENCHMARKS)}")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="benchmark data directory, as nexus-eval's (default: $NEXUS_EVAL_DATA or data/benchmarks)")
    p.add_argument("--limit", type=int, default=None, help="at most N examples per task (BBH, MMLU: per subtask)")
    p.add_argument("--out", type=Path, default=Path("analysis"), help="output directory (default: analysis)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sequences", type=int, default=32,
                   help="windows of data.seq_len tokens per training domain for the training loss/gradient")
    p.add_argument("--split", choices=("train", "val"), default="train",
                   help="training-domain windows from the train streams (default) or the validation streams")


def _domains(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domains", default=None,
                   help="comma-separated training and/or OOD domains of the run to treat as targets too (their "
                        "windows, as for the training loss; paper Tab. 4's Pretrain/OOD Set columns)")


def _descent(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=100, help="full-batch descent steps (default 100)")
    p.add_argument("--lr", type=float, default=2e-5, help="learning rate (paper: 2e-5)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="(paper: 0)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw",
                   help="adamw (paper) or sgd (plain gradient descent)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Gradient similarity, parameter closeness and loss "
                                                            "landscapes of run checkpoints (paper Sec. 5.1, Fig. 7); "
                                                            "metrics of runs at matched pretraining loss.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cosine", help="gradient cosine: training mixture vs each task, and between training "
                                      "domains, averaged over checkpoints")
    c.add_argument("paths", nargs="+", type=Path, help="checkpoints and/or run directories (= all their checkpoints)")
    _common(c, tasks_required=False)
    k = sub.add_parser("closeness", help="||theta_T* - theta_train*|| after full-batch descent on each task")
    k.add_argument("path", type=Path, help="checkpoint, or run directory (= its newest checkpoint)")
    _common(k, tasks_required=False)
    _domains(k)
    _descent(k)
    k.add_argument("--save-minimizer", action="store_true",
                   help="also write theta_T* (flat fp32) as OUT/theta_<task>.pt")
    s = sub.add_parser("landscape", help="2-D loss slice through theta_train* and theta_T* (Fig. 7c)")
    s.add_argument("path", type=Path, help="checkpoint, or run directory (= its newest checkpoint)")
    _common(s, tasks_required=False)
    _domains(s)
    _descent(s)
    s.add_argument("--direction", choices=("random", "filter"), default="random",
                   help="second direction: random orthogonalized, scaled to ||d1|| (default) or filter-normalized")
    s.add_argument("--grid", type=int, default=11, help="points per axis (0 and 1 on alpha, 0 on beta are added)")
    s.add_argument("--alpha-range", type=float, nargs=2, default=(-0.5, 1.5), metavar=("LOW", "HIGH"))
    s.add_argument("--beta-range", type=float, nargs=2, default=(-1.0, 1.0), metavar=("LOW", "HIGH"))
    s.add_argument("--seed", type=int, default=0, help="seed of the second direction")
    s.add_argument("--no-train-loss", action="store_true", help="grid of the downstream loss only")
    f = sub.add_parser("fig7a", help="results JSONs (pretrain + downstream loss) of every checkpoint through "
                                     "nexus-eval, and the Fig. 7a plot")
    f.add_argument("paths", nargs="+", type=Path, help="run directories (= all their checkpoints) and/or checkpoints")
    f.add_argument("--tasks", required=True, help="comma-separated downstream benchmarks")
    f.add_argument("--data-dir", type=Path, default=None)
    f.add_argument("--limit", type=int, default=None)
    f.add_argument("--batch-size", type=int, default=8)
    f.add_argument("--device", default="cpu")
    f.add_argument("--out", type=Path, default=Path("analysis"))
    i = sub.add_parser("isoloss", help="a metric at matched pretraining loss: the candidate's, interpolated over "
                                       "its fully decayed endpoints (run + cooldown branches), against the "
                                       "baseline's, paired by seed")
    i.add_argument("paths", nargs="+", type=Path, metavar="RUN",
                   help="candidate runs and/or directories of runs (a sweep's)")
    i.add_argument("--baseline", nargs="+", type=Path, required=True, metavar="RUN",
                   help="baseline runs and/or directories of runs")
    i.add_argument("--metric", default="ood/mean", help="ood/mean (default), ood/<domain>, val/<domain>, "
                                                        "downstream/<task> or cos/mean")
    i.add_argument("--points", choices=isoloss.POINTS, default="decayed",
                   help="decayed (default): each run's final evaluation and its cooldown branches'; all: also "
                        "every earlier evaluation (stable-phase points, as in the paper's Fig. 7a)")
    i.add_argument("--interpolation", choices=("pchip", "linear"), default="pchip",
                   help="in pretraining loss: monotone piecewise cubic (default; needs scipy) or piecewise linear")
    i.add_argument("--skip-out-of-range", action="store_true",
                   help="leave out (and list) a seed whose matched loss lies outside the candidate's range, "
                        "instead of refusing the comparison")
    i.add_argument("--levels", action="store_true",
                   help="also match at each of the baseline's cooldown branches' pretraining losses, one paired "
                        "comparison per branch: does the difference hold along the run, not only at its end")
    i.add_argument("--out", type=Path, default=Path("analysis"), help="output directory (default: analysis)")
    return parser


def _data_dir(args: argparse.Namespace) -> Path:
    return args.data_dir or Path(os.environ.get("NEXUS_EVAL_DATA", "data/benchmarks"))


def _task_names(args: argparse.Namespace) -> List[str]:
    names = [t for t in (args.tasks or "").split(",") if t]
    if args.tasks is not None and not names:
        raise ValueError("--tasks is empty")
    select(names)  # ValueError naming an unknown benchmark
    return names


class _TaskCache:
    """Downstream sequences per (tokenizer, context length): checkpoints of one run share them."""
    def __init__(self, names: List[str], data_dir: Path, limit: Optional[int]):
        self.names, self.data_dir, self.limit, self.cache = names, data_dir, limit, {}

    def __call__(self, loaded: Any) -> Dict[str, Any]:
        if not self.names:
            return {}
        d = loaded.cfg.data
        key = (d.source, getattr(d, "tokenizer", None), loaded.model.args.max_seq_len)
        if key not in self.cache:
            self.cache[key] = downstream_sequences(loaded.tokenizer, self.names, self.data_dir,
                                                   loaded.model.args.max_seq_len, self.limit)
        return self.cache[key]


def _write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")
    return path


def run_cosine(args: argparse.Namespace) -> Dict[str, Any]:
    names = _task_names(args)
    checkpoints = resolve_checkpoints(args.paths, all_of_run=True)
    tasks = _TaskCache(names, _data_dir(args), args.limit)
    result = cosines_over_checkpoints(checkpoints, tasks, args.sequences, args.batch_size, args.split, args.device)
    result["tasks"] = names
    path = _write_json(args.out / "cosine.json", result)
    for key, value in result["mean"].items():
        show(f"{key:<32} {value:+.4f}")
    show(f"mean over {len(checkpoints)} checkpoint(s); wrote {path}")
    return result


def _final_model_and_tasks(args: argparse.Namespace, need_train: bool = False):
    """The newest checkpoint's model, its targets (tasks, then --domains) and its training set (or None)."""
    names = _task_names(args)
    domains = [d for d in (args.domains or "").split(",") if d]
    if not names and not domains:
        raise ValueError("give --tasks and/or --domains")
    checkpoint = resolve_checkpoints([args.path], all_of_run=False)[0]
    loaded = load_checkpoint_model(checkpoint, args.device)
    targets = dict(_TaskCache(names, _data_dir(args), args.limit)(loaded))
    train = None
    if domains or need_train:
        train = training_set(loaded.cfg, args.sequences, args.batch_size, args.split)
    for d in domains:
        windows = train.batches.get(d) or (train.ood or {}).get(d)
        if windows is None:
            raise ValueError(f"unknown domain {d!r}; the run has {', '.join([*train.batches, *(train.ood or {})])}")
        if d in targets:
            raise ValueError(f"domain {d!r} has the name of a task column")
        targets[d] = windows
    return loaded, targets, train


def _settings(args: argparse.Namespace):
    return GDSettings(steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer,
                      batch_size=args.batch_size)


def run_closeness(args: argparse.Namespace) -> Dict[str, Any]:
    settings = _settings(args)
    loaded, tasks, _ = _final_model_and_tasks(args)
    per_task = parameter_closeness(loaded.model, tasks, settings, keep=args.save_minimizer)
    for column, entry in per_task.items():
        theta = entry.pop("theta", None)
        if theta is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            torch.save(theta, args.out / f"theta_{column}.pt")
    result = {"checkpoint": str(loaded.path), "step": loaded.step, "settings": vars(settings), "tasks": per_task}
    path = _write_json(args.out / "closeness.json", result)
    for column, e in per_task.items():
        show(f"{column:<10} ||dtheta|| {e['distance']:.4e} (relative {e['relative']:.3e})  "
              f"loss {e['loss_before']:.4f} -> {e['loss_after']:.4f}")
    show(f"wrote {path}")
    return result


def run_landscape(args: argparse.Namespace) -> Dict[str, Any]:
    settings = _settings(args)
    alphas = ls.axis(*args.alpha_range, args.grid, must=(0.0, 1.0))
    betas = ls.axis(*args.beta_range, args.grid, must=(0.0,))
    loaded, tasks, train = _final_model_and_tasks(args, need_train=not args.no_train_loss)
    if args.no_train_loss:
        train = None
    theta_train = flat_parameters(loaded.model)
    minimizers = parameter_closeness(loaded.model, tasks, settings, keep=True)
    out: Dict[str, Any] = {"checkpoint": str(loaded.path), "step": loaded.step, "settings": vars(settings),
                           "direction": args.direction, "seed": args.seed, "tasks": {}}
    for column, entry in minimizers.items():
        theta_task = entry.pop("theta")
        d1 = theta_task - theta_train
        d2 = ls.second_direction(loaded.model, d1, args.direction, args.seed)
        grids = ls.loss_grid(loaded.model, theta_train, theta_task, d2, alphas, betas, train,
                             {column: tasks[column]}, args.batch_size)
        npz = ls.save_npz(args.out / f"landscape_{column}.npz", alphas, betas, grids, float(d1.norm()),
                          float(d2.norm()), args.direction)
        figures = ls.plot(args.out, f"landscape_{column}", alphas, betas, grids,
                          title=f"{column}: step {loaded.step}, ||d1|| = {float(d1.norm()):.3e}")
        out["tasks"][column] = {**{k: v for k, v in entry.items() if k != "losses"}, "npz": str(npz),
                                "figures": [str(p) for p in figures], "d2_norm": float(d2.norm())}
        show(f"{column:<10} ||d1|| {float(d1.norm()):.4e}; wrote {npz} and {figures[0]}")
    _write_json(args.out / "landscape.json", out)
    return out


def run_fig7a(args: argparse.Namespace) -> Dict[str, Any]:
    """nexus-eval --checkpoint --no-harness on every checkpoint, then report.plots.downstream_vs_pretrain."""
    _task_names(args)
    checkpoints = resolve_checkpoints(args.paths, all_of_run=True)
    results, files = [], []
    for checkpoint in checkpoints:
        run_dir = checkpoint.parent.parent
        out = args.out / "fig7a" / f"{run_dir.name}_{checkpoint.name}.json"
        argv = [str(run_dir), "--checkpoint", str(checkpoint), "--no-harness", "--tasks", args.tasks,
                "--batch-size", str(args.batch_size), "--device", args.device, "--out", str(out)]
        if args.data_dir is not None:
            argv += ["--data-dir", str(args.data_dir)]
        if args.limit is not None:
            argv += ["--limit", str(args.limit)]
        try:
            eval_command.main(argv)
        except SystemExit as e:  # nexus-eval's one-line errors
            raise ValueError(str(e.code).removeprefix("nexus-eval: ")) from None
        results.append(load_results(out))
        files.append(str(out))
    figures = downstream_vs_pretrain(results, args.out)
    summary = {"results": files, "figures": [str(p) for p in figures],
               "points": [{"checkpoint": r.get("checkpoint"), "step": r.get("step"),
                           "pretrain": r["metrics"]["pretrain"], "downstream": r["metrics"]["loss"].get("All")}
                          for r in results]}
    _write_json(args.out / "fig7a.json", summary)
    show(f"wrote {len(files)} results JSON(s) under {args.out / 'fig7a'} and {figures[0]}")
    return summary


def run_isoloss(args: argparse.Namespace) -> Dict[str, Any]:
    """analysis.isoloss.compare, its table, JSON and figure (OUT/isoloss_<metric>.json, .png, .pdf)."""
    result = isoloss.compare(args.paths, args.baseline, args.metric, args.interpolation, args.points,
                             args.skip_out_of_range, args.levels)
    show(isoloss_report.summary_text(result))
    stem = isoloss_report.file_stem(args.metric)
    try:
        result["figures"] = [str(p) for p in isoloss_report.plot(result, args.out, stem)]
        figures = f" and {result['figures'][0]}"
    except MissingExtra as error:
        figures = f"; no figure: {error}"
    path = _write_json(args.out / f"{stem}.json", result)
    show(f"wrote {path}{figures}")
    return result


COMMANDS = {"cosine": run_cosine, "closeness": run_closeness, "landscape": run_landscape, "fig7a": run_fig7a,
            "isoloss": run_isoloss}


def main(argv: Optional[List[str]] = None) -> None:
    """The console script: parse, run the subcommand, write its results under --out."""
    run(argv)


def run(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """main, returning the subcommand's result (also written under --out)."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    paths = list(getattr(args, "paths", None) or []) + [p for p in [getattr(args, "path", None)] if p is not None]
    for p in paths:
        if not Path(p).exists():
            sys.exit(f"{PROG} {args.command}: {p} not found")
    started = time.perf_counter()
    try:
        result = COMMANDS[args.command](args)
    except (FileNotFoundError, ValueError, KeyError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        sys.exit(f"{PROG} {args.command}: {message}")
    log.info(f"{args.command} done in {time.perf_counter() - started:.1f}s")
    return result


if __name__ == "__main__":
    main()
