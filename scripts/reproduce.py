#!/usr/bin/env python3
"""Reproduce one of the paper's tables: train its runs, evaluate them and print them next to the paper's.

    scripts/reproduce.py table1 --scale tiny --seeds 0,1,2
    scripts/reproduce.py table3 --scale paper --launcher "scripts/launch.sh --gpus 8" --data-dir data/benchmarks
    scripts/reproduce.py table1 --collect-only --run-root runs/reproduce
    scripts/reproduce.py table7 --scale tiny --in-process   # CPU check: no new interpreter per run
    scripts/reproduce.py all --estimate     # H100-hours of every table's paper-scale runs, trains nothing
    scripts/reproduce.py table11 --scale tiny      # pretrain the bases, fine-tune them (SFT), compare

Runs come from configs/experiment/ (tiny/ for --scale tiny) as listed in nexus_pretrain/experiments/registry.py;
each is trained with nexus-train in a subprocess (or, with --in-process, by its entry point in this process,
one run at a time; skipped when finished, resumed from checkpoints) and
evaluated with the evaluation stage (held-out pretrain/OOD losses only unless --data-dir gives the
benchmarks). Writes to --out (default RUN_ROOT/SCALE/TABLE/): table.md/.csv/.tex (our runs through
nexus_pretrain.report), comparison.md (ours vs the paper per cell, improvement mean ± std and 95% CI over
seeds, same-pretraining-loss check) and comparison.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reproduce.py", description=__doc__.split("\n\n")[0])
    p.add_argument("table", help="table1, table2, table3, table7, table8, table9, table10 or table11 (or just the number)")
    p.add_argument("--scale", choices=("tiny", "paper"), default="tiny")
    p.add_argument("--seeds", default="0", help="comma-separated trainer.seed values (default 0)")
    p.add_argument("--run-root", type=Path, default=Path("runs/reproduce"))
    p.add_argument("--collect-only", action="store_true", help="train and evaluate nothing; tabulate what exists")
    p.add_argument("--groups", default=None, help="comma-separated group labels of the table to run (default all)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for every run (repeatable)")
    p.add_argument("--launcher", default=None,
                   help="command that runs nexus-train with overrides (default: python -m nexus_pretrain), "
                        "e.g. 'scripts/launch.sh --gpus 8'")
    p.add_argument("--data-dir", type=Path, default=None, help="local benchmarks: run the full evaluation stage")
    p.add_argument("--tasks", default="", help="comma-separated benchmarks with --data-dir (default all eight)")
    p.add_argument("--limit", type=int, default=None, help="examples per benchmark (smoke tests)")
    p.add_argument("--device", default="cpu", help="evaluation device")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (subprocesses; default 1)")
    p.add_argument("--verbose", action="store_true", help="show the training output instead of logging it to the run")
    p.add_argument("--in-process", action="store_true",
                   help="train each run by nexus-train's entry point in this process, one at a time, instead of "
                        "in a new interpreter (for tiny runs and tests)")
    p.add_argument("--estimate", action="store_true",
                   help="train nothing; print the H100-hours of the table's runs at --scale paper from the "
                        "measured H100 throughput (TABLE 'all': every table, shared runs once)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.in_process and (args.launcher or args.jobs > 1):
        parser.error("--in-process trains one run at a time in this process; drop --launcher and --jobs")
    from nexus_pretrain.experiments import compare, runner
    from nexus_pretrain.experiments.paper import load_paper, paper_source
    from nexus_pretrain.experiments.registry import table_spec
    from nexus_pretrain.report.render import FORMATS

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.estimate:
        print(estimate(args.table, seeds, args.override))
        return 0
    spec = table_spec(args.table)
    groups = [g.strip() for g in args.groups.split(",")] if args.groups else None
    runs = runner.plan_runs(spec, args.scale, seeds, args.run_root, args.override, groups)
    launcher = (runner.IN_PROCESS if args.in_process
                else shlex.split(args.launcher) if args.launcher else runner.DEFAULT_LAUNCHER)
    if not args.collect_only:
        # shared rows train once; fine-tuning runs (Table 11) after the pretraining runs they start from
        waves = runner.training_waves(runs)
        todo = [run for wave in waves for run in wave]
        print(f"{spec.name}: {len(runs)} runs, {len(todo)} to train", flush=True)

        def train_one(item):
            i, run = item
            t0 = time.time()
            print(f"[{i + 1}/{len(todo)}] {run.row.group or '-'}/{run.row.row} seed {run.seed}: training in "
                  f"{run.run_dir}", flush=True)
            runner.train(run, launcher, quiet=not args.verbose)
            print(f"[{i + 1}/{len(todo)}] trained in {time.time() - t0:.0f} s", flush=True)

        start = 0
        for wave in waves:
            with ThreadPoolExecutor(max(1, args.jobs)) as pool:
                list(pool.map(train_one, enumerate(wave, start)))
            start += len(wave)
        for run in runs:
            runner.evaluate(run, args.data_dir, [t for t in args.tasks.split(",") if t], args.limit, args.device)
    results, missing = {}, []
    for run in runs:
        doc = runner.collect(run)
        if doc is None:
            missing.append(str(run.run_dir))
        else:
            results[str(run.run_dir)] = doc
    paper = load_paper(spec.layout_path)
    out = args.out or args.run_root / args.scale / spec.name
    out.mkdir(parents=True, exist_ok=True)
    table = compare.our_table(spec, runs, results)
    for fmt, render in FORMATS.items():
        (out / f"table.{fmt}").write_text(render(table))
    stats = compare.seed_stats(spec, runs, results, paper)
    checks = compare.same_loss_checks(stats)
    text = "\n".join([
        f"# {spec.name}, scale {args.scale}, seeds {','.join(map(str, seeds))}",
        "", f"Paper: {paper_source(spec.layout_path)}.", "",
        "## Our runs", "", FORMATS["md"](table),
        "## Ours vs the paper (mean over seeds)", "", compare.paper_comparison_markdown(spec, runs, results, paper),
        "## Improvement over the baseline over seeds (loss: baseline - row; accuracy: row - baseline)", "",
        compare.seed_stats_markdown(stats),
        "## Same pretraining loss (|Δ| ≤ 0.01)", "", compare.same_loss_markdown(checks),
        *(["## Missing (not trained or not evaluated)", "", *[f"- {m}" for m in missing], ""] if missing else []),
    ])
    (out / "comparison.md").write_text(text)
    (out / "comparison.json").write_text(json.dumps({
        "table": spec.name, "scale": args.scale, "seeds": seeds, "paper_source": paper_source(spec.layout_path),
        "runs": [{"group": r.row.group, "row": r.row.row, "seed": r.seed, "run_dir": str(r.run_dir),
                  "overrides": r.overrides, "tag": r.row.tag} for r in runs],
        "improvements": [{"group": s.group, "row": s.row, "baseline": s.baseline, "cell": list(s.key),
                          "values": s.values, "mean": s.summary.mean, "std": s.summary.std, "ci95": s.ci,
                          "paper": s.paper} for s in stats],
        "same_pretraining_loss": checks, "missing": missing}, indent=1) + "\n")
    print(text)
    print(f"wrote {out}/comparison.md, comparison.json and table.md/.csv/.tex")
    return 0


def estimate(table: str, seeds, overrides) -> str:
    """The H100-hours of a table's paper-scale runs (or, for 'all', of every table's) as markdown."""
    from nexus_pretrain.experiments import compute
    from nexus_pretrain.experiments.registry import TABLES, table_spec

    names = list(TABLES) if table == "all" else [table_spec(table).name]
    by_table = compute.table_costs(names, seeds, overrides)
    head = (f"Paper-scale runs, seeds {','.join(map(str, seeds))}: 1 H100-equivalent per run at the MFU measured "
            "by nexus-bench (README, Performance), evaluation not counted.\n\n")
    if table != "all":
        return head + compute.runs_markdown(by_table[names[0]])
    return head + compute.tables_markdown(by_table) + "\n" + compute.runs_markdown(compute.distinct_runs(by_table))


if __name__ == "__main__":
    sys.exit(main())
