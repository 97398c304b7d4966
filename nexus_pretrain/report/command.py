"""nexus-report's command line: compare run directories, or build the paper's tables from results JSONs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus-report",
        description="With run directories (metrics.jsonl): a Markdown table of final training, pretrain and OOD "
                    "losses. With results JSONs (nexus-eval): the paper's tables (Acc./Loss/Improv. rows per "
                    "optimizer) in Markdown, LaTeX and CSV. --plots adds figures (PNG and PDF).")
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="run directories, or results JSON files (or folders holding them)")
    parser.add_argument("--baseline", default=None,
                        help="run directory (runs mode) or optimizer label (results mode, default table) "
                             "to compare with")
    parser.add_argument("--table", action="append", type=Path, default=[],
                        help="table layout YAML (eval/tables/table1.yaml ...); repeatable; "
                             "default: one row per optimizer")
    parser.add_argument("--format", default="md", help="comma-separated output formats for stdout: md, tex, csv")
    parser.add_argument("--out", type=Path, default=None, help="also write every table as <name>.md/.tex/.csv here")
    parser.add_argument("--plots", type=Path, default=None, help="write figures to this folder")
    return parser


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "metrics.jsonl").is_file()


def _results_files(inputs: List[Path]) -> List[Path]:
    files: List[Path] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(path.glob("*.json")) + sorted(path.glob("eval/*.json"))
            if not found:
                raise FileNotFoundError(f"{path}: no results JSON in it (nor in {path}/eval)")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} not found")
    return files


def main(argv: Optional[List[str]] = None) -> None:
    """Dispatch on the inputs: run directories -> compare_runs; results JSONs -> tables."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if all(_is_run_dir(p) for p in args.inputs):
            _runs_mode(args)
        elif any(_is_run_dir(p) for p in args.inputs):
            raise ValueError("mixed inputs: give either run directories or results JSONs, not both")
        else:
            _results_mode(args)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"nexus-report: {e}")


def _runs_mode(args: argparse.Namespace) -> None:
    from nexus_pretrain.report.runs import compare_runs

    print(compare_runs(args.inputs, baseline=args.baseline))
    if args.plots:
        from nexus_pretrain.report.plots import domain_losses, loss_curves

        for path in loss_curves(args.inputs, args.plots) + domain_losses(args.inputs, args.plots):
            print(f"wrote {path}")


def _results_mode(args: argparse.Namespace) -> None:
    from nexus_pretrain.evaluation.results import load_results
    from nexus_pretrain.report.tables import FORMATS, build_table, default_layout, load_layout

    results = [load_results(p) for p in _results_files(args.inputs)]
    formats = [f for f in args.format.split(",") if f]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"--format {','.join(unknown)}: choose from {', '.join(FORMATS)}")
    layouts = [load_layout(p) for p in args.table] or [default_layout(results, args.baseline)]
    for layout in layouts:
        table = build_table(layout, results)
        for fmt in formats:
            print(FORMATS[fmt](table))
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            for fmt, render in FORMATS.items():
                (args.out / f"{layout.name}.{fmt}").write_text(render(table))
    if args.plots:
        from nexus_pretrain.report.plots import domain_losses, downstream_vs_pretrain, loss_curves

        paths = downstream_vs_pretrain(results, args.plots)
        run_dirs = list(dict.fromkeys(Path(r["run_dir"]) for r in results if r.get("run_dir")))
        run_dirs = [d for d in run_dirs if _is_run_dir(d)]
        if run_dirs:
            paths += loss_curves(run_dirs, args.plots) + domain_losses(run_dirs, args.plots)
        for path in paths:
            print(f"wrote {path}")
