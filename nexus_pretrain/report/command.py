"""nexus-report's command line: compare run directories, or build the paper's tables from results JSONs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from nexus_pretrain.console import show
from nexus_pretrain.evaluation.results import load_results
from nexus_pretrain.report.plots import domain_losses, downstream_vs_pretrain, loss_curves
from nexus_pretrain.report.sweep import compare_runs, expand_inputs, is_run_dir
from nexus_pretrain.report.render import FORMATS
from nexus_pretrain.report.tables import build_table, default_layout, load_layout, with_match

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus-report",
        description="With run directories (metrics.jsonl) or a sweep's directory: a Markdown table of final "
                    "training, per-domain, pretrain and OOD losses, a row per swept configuration (seeds "
                    "aggregated). With results JSONs (nexus-eval): the paper's tables (Acc./Loss/Improv. rows per "
                    "optimizer, a group per other swept value) in Markdown, LaTeX and CSV. --plots adds figures "
                    "(PNG and PDF).")
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="run directories, a sweep's directory (runs/multirun/DATE) or a folder of runs, or "
                             "results JSON files (or folders holding them)")
    parser.add_argument("--baseline", default=None,
                        help="run directory (runs mode) or optimizer label (results mode, default table) "
                             "to compare with")
    parser.add_argument("--table", action="append", type=Path, default=[],
                        help="table layout YAML (eval/tables/table1.yaml ...); repeatable; "
                             "default: one row per optimizer")
    parser.add_argument("--match", action="append", default=[], metavar="FIELD=VALUE",
                        help="with --table: set this match field in every row, e.g. model=tiny to tabulate tiny runs "
                             "in the layout of a 3B table")
    parser.add_argument("--format", default="md", help="comma-separated output formats for stdout: md, tex, csv")
    parser.add_argument("--out", type=Path, default=None, help="also write every table as <name>.md/.tex/.csv here")
    parser.add_argument("--plots", type=Path, default=None, help="write figures to this folder")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Dispatch on the inputs: run directories (or a sweep's directory) -> compare_runs; results JSONs -> tables."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        runs, results, ignored = expand_inputs(args.inputs)
        for path in ignored:
            log.warning(f"nexus-report: ignored {path} (neither a run directory nor a results JSON)")
        if runs and results:
            raise ValueError("mixed inputs: give either run directories or results JSONs, not both")
        if not runs and not results:
            raise ValueError("no run directory and no results JSON among the inputs")
        if runs:
            _runs_mode(args, runs)
        else:
            _results_mode(args, results)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"nexus-report: {e}")


def _runs_mode(args: argparse.Namespace, runs: List[Path]) -> None:
    show(compare_runs(runs, baseline=args.baseline))
    if args.plots:
        for path in loss_curves(runs, args.plots) + domain_losses(runs, args.plots):
            show(f"wrote {path}")


def _results_mode(args: argparse.Namespace, files: List[Path]) -> None:
    results = [load_results(p) for p in files]
    formats = [f for f in args.format.split(",") if f]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"--format {','.join(unknown)}: choose from {', '.join(FORMATS)}")
    layouts = [with_match(load_layout(p), args.match) for p in args.table] or [default_layout(results, args.baseline)]
    for layout in layouts:
        table = build_table(layout, results)
        for warning in table.warnings:
            log.warning(f"nexus-report: {warning}")
        for fmt in formats:
            show(FORMATS[fmt](table))
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            for fmt, render in FORMATS.items():
                (args.out / f"{layout.name}.{fmt}").write_text(render(table))
    if args.plots:
        paths = downstream_vs_pretrain(results, args.plots)
        run_dirs = list(dict.fromkeys(Path(r["run_dir"]) for r in results if r.get("run_dir")))
        run_dirs = [d for d in run_dirs if is_run_dir(d)]
        if run_dirs:
            paths += loss_curves(run_dirs, args.plots) + domain_losses(run_dirs, args.plots)
        for path in paths:
            show(f"wrote {path}")
