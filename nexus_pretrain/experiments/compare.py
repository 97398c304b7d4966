"""Our table next to the paper's: per-cell differences, seed statistics, the same-pretraining-loss check.

Improvements use the paper's sign (its "Improv." rows): for a loss, baseline - run; for an accuracy,
run - baseline; positive means the row (Nexus) is better than the group's baseline (AdamW). The runs of
one seed see the same batches (the registry's rows differ only in the swept optimizer, schedule or
mixture), so improvements are paired over seeds, with report.stats' one rule and verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from nexus_pretrain.experiments.paper import PaperRows
from nexus_pretrain.experiments.registry import TableSpec
from nexus_pretrain.experiments.runner import PlannedRun
from nexus_pretrain.report.stats import (LOSS_THRESHOLD, SAME, Difference, Summary, paired_difference,
                                        pretraining_loss_verdict, summarize)
from nexus_pretrain.report.tables import CELL_KEYS as CELLS
from nexus_pretrain.report.tables import GroupSpec, Layout, RowSpec, build_table, cell_value, load_layout


def run_layout(spec: TableSpec, runs: Sequence[PlannedRun]) -> Layout:
    """The table's layout (eval/tables/) with each row matching exactly its planned run directories."""
    layout = load_layout(spec.layout_path)
    dirs: Dict[Tuple[str, str], List[str]] = {}
    for run in runs:
        dirs.setdefault((run.row.group, run.row.row), []).append(str(run.run_dir))
    groups = []
    for g in layout.groups:
        rows = [RowSpec(r.label, {"run_dir": dirs[(g.label, r.label)]}, r.baseline)
                for r in g.rows if (g.label, r.label) in dirs]
        rows += [RowSpec(r.row, {"run_dir": dirs[(g.label, r.row)]}) for r in spec.rows
                 if r.extra and r.group == g.label and (g.label, r.row) in dirs and r.row not in [x.label for x in rows]]
        if rows and any(r.baseline for r in rows):
            groups.append(GroupSpec(g.label, rows))
    layout.groups = groups
    return layout


def improvement(kind: str, base: float, run: float) -> float:
    return base - run if kind == "loss" else run - base


@dataclass
class SeedStat:
    """Improvement of a row over its group's baseline over paired seeds."""

    group: str
    row: str
    baseline: str
    key: Tuple[str, str]
    values: List[float]
    paper: Optional[float]

    @property
    def summary(self) -> Optional[Summary]:
        return summarize(self.values)

    @property
    def difference(self) -> Optional[Difference]:
        """The mean improvement with its paired t interval over seeds."""
        return paired_difference(self.values)

    @property
    def ci(self) -> Optional[Tuple[float, float]]:
        d = self.difference
        return None if d is None else d.ci


def seed_stats(spec: TableSpec, runs: Sequence[PlannedRun], results: Mapping[str, Mapping[str, Any]],
               paper: PaperRows) -> List[SeedStat]:
    """Per group, non-baseline row and cell: the improvement over the baseline at each common seed."""
    layout = run_layout(spec, runs)
    by_row: Dict[Tuple[str, str], Dict[int, Mapping[str, Any]]] = {}
    for run in runs:
        doc = results.get(str(run.run_dir))
        if doc is not None:
            by_row.setdefault((run.row.group, run.row.row), {})[run.seed] = doc
    out = []
    for g in layout.groups:
        base = next(r.label for r in g.rows if r.baseline)
        for r in g.rows:
            if r.baseline or (g.label, r.label) not in by_row or (g.label, base) not in by_row:
                continue
            mine, theirs = by_row[(g.label, r.label)], by_row[(g.label, base)]
            seeds = sorted(set(mine) & set(theirs))
            p_run, p_base = paper.get((g.label, r.label), {}), paper.get((g.label, base), {})
            for key in CELLS:
                vals = [improvement(key[0], cell_value(theirs[s], key), cell_value(mine[s], key)) for s in seeds
                        if cell_value(theirs[s], key) is not None and cell_value(mine[s], key) is not None]
                if not vals:
                    continue
                pv = None
                if p_run.get(key) is not None and p_base.get(key) is not None:
                    pv = improvement(key[0], p_base[key], p_run[key])
                out.append(SeedStat(g.label, r.label, base, key, vals, pv))
    return out


def _f(x: Optional[float], kind: str, sign: bool = False) -> str:
    if x is None:
        return "—"
    digits = 3 if kind == "loss" else 1
    if round(x, digits) == 0:
        x = 0.0  # no "-0.000"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def paper_comparison_markdown(spec: TableSpec, runs: Sequence[PlannedRun],
                              results: Mapping[str, Mapping[str, Any]], paper: PaperRows) -> str:
    """Per row: our mean (± std) over seeds, the paper's value and ours - paper, for every cell either has."""
    header = ["Group", "Optim.", "Cell", "ours", "paper", "ours - paper"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    seen = []
    for run in runs:
        key = (run.row.group, run.row.row)
        if key not in seen:
            seen.append(key)
    for group, row in seen:
        docs = [results[str(r.run_dir)] for r in runs
                if (r.row.group, r.row.row) == (group, row) and str(r.run_dir) in results]
        p = paper.get((group, row), {})
        for cell in CELLS:
            s = summarize([cell_value(d, cell) for d in docs])
            pv = p.get(cell)
            if s is None and pv is None:
                continue
            kind = cell[0]
            ours = "—" if s is None else _f(s.mean, kind) + (f" ± {_f(s.std, kind)}" if s.n > 1 else "")
            name = f"{'Acc.' if kind == 'acc' else 'Loss'} {cell[1]}"
            diff = None if pv is None or s is None else s.mean - pv
            lines.append(f"| {group} | {row} | {name} | {ours} | {_f(pv, kind)} | {_f(diff, kind, sign=True)} |")
    return "\n".join(lines) + "\n"


def seed_stats_markdown(stats: Sequence[SeedStat]) -> str:
    """Improvement over the baseline: mean ± std over seeds, its 95% CI (paired t) and the paper's."""
    header = ["Group", "Row vs baseline", "Cell", "seeds", "improvement mean ± std", "95% CI", "paper"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for st in stats:
        s, ci, kind = st.summary, st.ci, st.key[0]
        ci_text = "—" if ci is None else f"[{_f(ci[0], kind, True)}, {_f(ci[1], kind, True)}]"
        name = f"{'Acc.' if kind == 'acc' else 'Loss'} {st.key[1]}"
        lines.append(f"| {st.group} | {st.row} - {st.baseline} | {name} | {s.n} | "
                     f"{_f(s.mean, kind, True)} ± {_f(s.std, kind)} | {ci_text} | {_f(st.paper, kind, True)} |")
    return "\n".join(lines) + "\n"


def same_loss_checks(stats: Sequence[SeedStat]) -> List[Dict[str, Any]]:
    """Per compared row: report.stats' pretraining-loss verdict (same / not the same / inconclusive), ours and
    the paper's."""
    out = []
    for st in stats:
        if st.key != ("loss", "Pretrain"):
            continue
        d = st.difference
        verdict = pretraining_loss_verdict(d)
        paper_verdict = None if st.paper is None else pretraining_loss_verdict(paired_difference([st.paper]))
        out.append({"group": st.group, "row": st.row, "baseline": st.baseline, "delta": d.mean, "ci95": d.ci,
                    "seeds": d.n, "verdict": verdict, "same": verdict == SAME, "paper_delta": st.paper,
                    "paper_verdict": paper_verdict, "paper_same": None if st.paper is None else paper_verdict == SAME})
    return out


def same_loss_markdown(checks: Sequence[Mapping[str, Any]]) -> str:
    """The same-pretraining-loss checks as a table (gap, its paired 95% CI, verdict; the paper's)."""
    header = ["Group", "Row vs baseline", "Δ pretrain loss (baseline - row)", "95% CI (paired)",
              f"verdict (|Δ| ≤ {LOSS_THRESHOLD})", "paper Δ", "paper verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in checks:
        ci = "—" if c["ci95"] is None else f"[{c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}]"
        delta = 0.0 if round(c["delta"], 4) == 0 else c["delta"]
        lines.append(f"| {c['group']} | {c['row']} - {c['baseline']} | {delta:+.4f} | {ci} | {c['verdict']} | "
                     f"{_f(c['paper_delta'], 'loss', True)} | {c['paper_verdict'] or '—'} |")
    return "\n".join(lines) + "\n"


def our_table(spec: TableSpec, runs: Sequence[PlannedRun], results: Mapping[str, Mapping[str, Any]]):
    """Our results rendered through nexus_pretrain.report (the layout's groups and rows, our runs)."""
    return build_table(run_layout(spec, runs), list(results.values()))
