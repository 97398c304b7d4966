"""The paper's result tables from results JSONs (rendered in Markdown, LaTeX and CSV by report.render).

A layout (eval/tables/*.yaml) lists groups of rows; each row selects results JSONs by matching
fields (dotted paths such as ``optimizer``, ``model``, ``config.schedule.name`` or ``run_name``,
compared as strings with shell-style wildcards). Every row gives an "Acc. (↑)" line (pretrain and
OOD loss, then the benchmark accuracies and their mean) and a "Loss (↓)" line (the benchmarks'
downstream losses and their mean); every non-baseline row is followed by its improvement over the
group's baseline row (accuracy: run - baseline; loss: baseline - run, so positive is better).

Bold marks the paper's non-trivial gaps: a loss improving by more than 0.01 or an accuracy by more
than 2 points, on the improved row's cell and on the improvement. Where several results match one row
(seeds; of one run only its last checkpoint counts), cells show mean ± sample std, improvements show
the mean gain ± the half-width of its 95% confidence interval, and a gap is bolded only when that
interval also excludes 0. The interval follows report.stats' one rule: paired over seeds (t interval of
the per-seed differences) when both rows have one run per seed with the same batches (batch_key),
Welch's otherwise. The pretraining loss is never bolded: a gap above 0.01 is marked "†" and noted as
"not the same pretraining loss".
"""

from __future__ import annotations

import fnmatch
import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from nexus_pretrain.data.epochs import repeated_data_notes
from nexus_pretrain.report.stats import (ACC_THRESHOLD, LOSS_THRESHOLD, NOT_SAME, Difference, Summary,
                                        paired_difference, pretraining_loss_verdict, significant_gain, summarize,
                                        unpaired_difference)
from nexus_pretrain.report.sweep import label as sweep_label
from nexus_pretrain.report.sweep import swept, tell_apart_by_config
from nexus_pretrain.rundir.run_name import run_overrides

BENCH_COLUMNS = ("MMLU", "GPQA", "GPQA-D", "BBH", "GSM8k", "MATH", "HumanEval", "MBPP", "All")
PRETRAIN = ("loss", "Pretrain")
NOT_SAME_MARK = "†"
UP, DOWN = "↑", "↓"


@dataclass
class RowSpec:
    label: str
    match: Dict[str, Any]
    baseline: bool = False


@dataclass
class GroupSpec:
    label: str
    rows: List[RowSpec]


@dataclass
class Layout:
    """Which results go where in one table."""

    name: str
    title: str = ""
    group_header: str = ""
    pretrain_header: str = "Pretrain."
    improvement_label: str = "Improv."
    improvement_rows: Tuple[str, ...] = ("acc", "loss")
    groups: List[GroupSpec] = field(default_factory=list)


@dataclass
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    """Header and body rows of a rendered table; body rows are label cells followed by value cells."""

    layout: Layout
    header: List[str]
    rows: List[List[Cell]]
    notes: List[str] = field(default_factory=list)
    """Lines printed under the table: how improvements' intervals were computed, flags such as †."""
    warnings: List[str] = field(default_factory=list)
    """What is missing for its empty cells: rows that match no result, metrics no result of a row has."""


def load_layout(path: Path) -> Layout:
    """A table layout from YAML (see eval/tables/)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not raw.get("groups"):
        raise ValueError(f"{path}: a table layout needs a non-empty 'groups' list")
    groups = []
    for g in raw["groups"]:
        rows = [RowSpec(str(r["label"]), dict(r.get("match") or {}), bool(r.get("baseline", False))) for r in g["rows"]]
        if sum(r.baseline for r in rows) != 1:
            raise ValueError(f"{path}: group {g.get('label')!r} needs exactly one row with baseline: true")
        groups.append(GroupSpec(str(g.get("label", "")), rows))
    return Layout(name=raw.get("name", path.stem), title=raw.get("title", ""), group_header=raw.get("group_header", ""),
                  pretrain_header=raw.get("pretrain_header", "Pretrain."),
                  improvement_label=raw.get("improvement_label", "Improv."),
                  improvement_rows=tuple(raw.get("improvement_rows", ("acc", "loss"))), groups=groups)


def with_match(layout: Layout, fields: Sequence[str]) -> Layout:
    """The layout with each ``FIELD=VALUE`` set in every row's match (e.g. model=tiny: a 3B table's layout over
    tiny runs); ValueError for an item without '='."""
    for item in fields:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--match {item}: write FIELD=VALUE, e.g. model=tiny")
        for group in layout.groups:
            for row in group.rows:
                row.match[key] = value
    return layout


def default_layout(results: Sequence[Mapping[str, Any]], baseline: Optional[str] = None) -> Layout:
    """The table of a set of results with no layout file: a group per value of what was swept besides the
    optimizer (data mixture, schedule, ...; report.sweep), in it a row per optimizer (with any other swept
    optimizer setting), so that only seeds are ever aggregated. Each group's baseline row is the optimizer
    ``baseline`` names, else adamw, else the group's first row."""
    results = latest_per_run(results)
    overrides = [_run_overrides(r) for r in results]
    by_dir = bool(results) and all(o is not None for o in overrides)
    configs = [r.get("config") for r in results]
    pairs = (tell_apart_by_config(swept(overrides, []), configs) if by_dir else swept([], configs) if all(configs)
             else [{} for _ in results])
    optimizers = list(dict.fromkeys(str(r.get("optimizer")) for r in results))
    if baseline is not None and baseline not in optimizers:
        raise ValueError(f"--baseline {baseline!r} matches no result's optimizer ({', '.join(optimizers)})")
    base = baseline or ("adamw" if "adamw" in optimizers else None)
    cells: Dict[str, Dict[str, Dict[str, Any]]] = {}  # group label -> row label -> match
    for result, swept_pairs in zip(results, pairs):
        others = {k: v for k, v in swept_pairs.items() if not k.startswith("optim")}
        optim = {k: v for k, v in swept_pairs.items() if k.startswith("optim.")}
        row = " ".join([str(result.get("optimizer")), sweep_label(optim)]).strip()
        if by_dir:
            match = cells.setdefault(sweep_label(others), {}).setdefault(row, {"run_dir": []})
            match["run_dir"].append(glob.escape(str(result["run_dir"])))
        else:
            fields = {f"config.{k}" if "." in k else f"config.{k}.name": glob.escape(v) for k, v in swept_pairs.items()}
            cells.setdefault(sweep_label(others), {})[row] = {"optimizer": glob.escape(str(result.get("optimizer"))),
                                                                **fields}
    groups = []
    for group_label, rows in cells.items():
        labels = list(rows)
        first = next((x for x in labels if x.split(" ")[0] == base), labels[0])
        specs = [RowSpec(x, rows[x], x == first) for x in [first] + [x for x in labels if x != first]]
        groups.append(GroupSpec(group_label, specs))
    return Layout(name="results", title="Results of {models} models",
                  group_header="Swept" if any(g.label for g in groups) else "", groups=groups)


def _run_overrides(result: Mapping[str, Any]) -> Optional[List[str]]:
    """The command line (Hydra's record) of the run a result comes from, None when it has none."""
    run_dir = result.get("run_dir")
    if not run_dir or not (Path(run_dir) / ".hydra" / "overrides.yaml").is_file():
        return None
    return run_overrides(Path(run_dir))


def lookup(result: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted path of a results document (None if absent)."""
    value: Any = result
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def matches(result: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    """Whether every field of ``match`` equals (as a string, wildcards allowed; a list: any of) the result's.

    An absent field reads as "None", so ``tag: "None"`` selects untagged results.
    """
    def one(value: Any, pattern: Any) -> bool:
        if isinstance(pattern, list):
            return any(one(value, p) for p in pattern)
        return fnmatch.fnmatchcase(str(value), str(pattern))

    return all(one(lookup(result, k), v) for k, v in match.items())


def cell_value(result: Mapping[str, Any], key: Tuple[str, str]) -> Optional[float]:
    """One cell of a results document: ("loss", "Pretrain" | "OOD" | column) or ("acc", column)."""
    kind, col = key
    if key == PRETRAIN:
        return lookup(result, "metrics.pretrain")
    if key == ("loss", "OOD"):
        return lookup(result, "metrics.ood")
    return (lookup(result, "metrics.accuracy" if kind == "acc" else "metrics.loss") or {}).get(col)


CELL_KEYS: Tuple[Tuple[str, str], ...] = (PRETRAIN, ("loss", "OOD"), *(("acc", c) for c in BENCH_COLUMNS),
                                          *(("loss", c) for c in BENCH_COLUMNS))


def _values(results: Sequence[Mapping[str, Any]]) -> Dict[Tuple[str, str], Optional[Summary]]:
    """(kind, column) -> summary over seeds; kinds: 'loss' for Pretrain/OOD/downstream loss, 'acc'."""
    return {key: summarize([cell_value(r, key) for r in results]) for key in CELL_KEYS}


def batch_key(result: Mapping[str, Any]) -> Optional[str]:
    """What fixes the batches a run saw: its seed, data config, global batch and inner steps (None when the
    document does not record its seed). Two runs with one key saw the same sequences in the same order."""
    seed = lookup(result, "config.trainer.seed")
    if seed is None:
        return None
    return json.dumps([seed, lookup(result, "config.data"), lookup(result, "config.trainer.global_batch"),
                       lookup(result, "config.optim.inner_steps")], sort_keys=True, default=str)


def paired_runs(run: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]]):
    """[(run result, base result)] matched by batch_key when the two rows are paired (each has one result per
    key and both have the same keys), else None."""
    run_keys, base_keys = [batch_key(r) for r in run], [batch_key(b) for b in base]
    if (None in run_keys or None in base_keys or len(set(run_keys)) != len(run_keys)
            or len(set(base_keys)) != len(base_keys) or set(run_keys) != set(base_keys)):
        return None
    by_key = dict(zip(base_keys, base))
    return [(r, by_key[k]) for r, k in zip(run, run_keys)]


def row_gain(run: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]],
             key: Tuple[str, str]) -> Optional[Difference]:
    """The gain of ``run`` over ``base`` in one cell, positive is better (loss: base - run; accuracy: run - base),
    paired over seeds when the rows are paired, Welch's otherwise (report.stats' rule)."""
    sign = -1.0 if key[0] == "loss" else 1.0
    pairs = paired_runs(run, base)
    if pairs is not None:
        values = [(cell_value(r, key), cell_value(b, key)) for r, b in pairs]
        return paired_difference([sign * (r - b) for r, b in values if r is not None and b is not None])
    run_values, base_values = [cell_value(r, key) for r in run], [cell_value(b, key) for b in base]
    return unpaired_difference(run_values, base_values) if sign > 0 else unpaired_difference(base_values, run_values)


def _fmt(s: Optional[Summary], kind: str) -> str:
    if s is None:
        return "—"
    digits = 3 if kind == "loss" else 1
    return f"{s.mean:.{digits}f}" + (f" ± {s.std:.{digits}f}" if s.n > 1 else "")


def _fmt_diff(diff: float, kind: str, ci: Optional[Tuple[float, float]]) -> str:
    digits = 3 if kind == "loss" else 1
    text = f"{diff:.{digits}f}"
    if text.lstrip("-").strip("0.") == "":
        text = f"{0:.{digits}f}"
    elif diff > 0:
        text = "+" + text
    if ci is not None:
        text += f" ± {(ci[1] - ci[0]) / 2:.{digits}f}"
    return text


def latest_per_run(results: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The last-step result of each run (results of one run at several checkpoints are not seeds)."""
    latest: Dict[Any, Mapping[str, Any]] = {}
    for r in results:
        key = r.get("run_dir") or r.get("model_dir") or id(r)
        if key not in latest or (r.get("step") or 0) > (latest[key].get("step") or 0):
            latest[key] = r
    return list(latest.values())


def build_table(layout: Layout, results: Sequence[Mapping[str, Any]]) -> Table:
    """Fill a layout with results. Only each run's last evaluated checkpoint counts; several runs matching a
    row are seeds. Rows are "Loss (↓)" (pretrain, OOD and downstream losses) and, when some result has
    accuracies, "Acc. (↑)"; benchmark columns no result has are left out; the table's warnings say which
    rows match no result and which metrics a row's results lack. ``{models}`` in the title becomes the
    model sizes of the results shown."""
    results = latest_per_run(results)
    matched = {(group.label, spec.label): [r for r in results if matches(r, spec.match)]
               for group in layout.groups for spec in group.rows}
    shown = [r for docs in matched.values() for r in docs]
    columns = [c for c in BENCH_COLUMNS[:-1]
               if any(cell_value(r, (kind, c)) is not None for r in shown for kind in ("acc", "loss"))]
    columns += [BENCH_COLUMNS[-1]] if columns else []
    has_acc = any(cell_value(r, ("acc", c)) is not None for r in shown for c in columns)
    header = [layout.group_header, "Optim.", "Metric", layout.pretrain_header, "OOD", *columns]
    rows: List[List[Cell]] = []
    methods: List[str] = []
    not_same = False
    for group in layout.groups:
        docs_of = {spec.label: matched[(group.label, spec.label)] for spec in group.rows}
        stats = {label: _values(docs) for label, docs in docs_of.items()}
        base_spec = next(s for s in group.rows if s.baseline)
        first = True
        for spec in group.rows:
            vals = stats[spec.label]
            gains = {} if spec.baseline else {k: row_gain(docs_of[spec.label], docs_of[base_spec.label], k)
                                              for k in vals}
            # the pretraining loss is the paper's control, never an improvement
            bold = {k: k != PRETRAIN and significant_gain(g, LOSS_THRESHOLD if k[0] == "loss" else ACC_THRESHOLD)
                    for k, g in gains.items()}
            methods += [g.method for g in gains.values() if g is not None and g.ci is not None]
            flagged = gains.get(PRETRAIN) is not None and pretraining_loss_verdict(gains[PRETRAIN]) == NOT_SAME
            not_same = not_same or flagged
            metric_rows = []
            if has_acc:
                metric_rows.append([Cell(f"Acc. ({UP})"), Cell(""), Cell("")]
                                   + [Cell(_fmt(vals[("acc", c)], "acc"), bold.get(("acc", c), False)) for c in columns])
            metric_rows.append([Cell(f"Loss ({DOWN})")]
                               + [Cell(_fmt(vals[("loss", c)], "loss"), bold.get(("loss", c), False))
                                  for c in ("Pretrain", "OOD", *columns)])
            for i, metric_row in enumerate(metric_rows):
                labels = [Cell(group.label if first else ""), Cell(spec.label)] if i == 0 else [Cell(""), Cell("")]
                rows.append(labels + metric_row)
                first = False
            if spec.baseline:
                continue
            label = layout.improvement_label
            if "acc" in layout.improvement_rows and has_acc:
                row = [Cell(""), Cell(label), Cell(f"Acc. ({UP})"), Cell("-"), Cell("-")]
                row += [_gain_cell(gains[("acc", c)], "acc", bold[("acc", c)]) for c in columns]
                rows.append(row)
                label = ""
            if "loss" in layout.improvement_rows:
                row = [Cell(""), Cell(label), Cell(f"Loss ({UP})")]
                row += [_gain_cell(gains[("loss", c)], "loss", bold[("loss", c)],
                                   flagged and c == "Pretrain") for c in ("Pretrain", "OOD", *columns)]
                rows.append(row)
    notes = []
    if methods:
        notes.append("± on an improvement: half-width of its 95% CI, " + "; ".join(dict.fromkeys(methods)) + ".")
    if not_same:
        notes.append(f"{NOT_SAME_MARK} {NOT_SAME}: the pretraining losses differ by more than {LOSS_THRESHOLD} "
                     "(paper Sec. 4.1), so the other gains of that row are not at the same pretraining loss.")
    notes += repeated_data_notes(r.get("epochs") or {} for r in shown)
    layout_shown = Layout(**{**layout.__dict__, "title": layout.title.replace("{models}", model_sizes(shown))})
    return Table(layout_shown, header, rows, notes, missing(layout, matched, results, columns, has_acc))


SIZE = re.compile(r"^llama_(\d+)([mb])$")


def model_sizes(results: Sequence[Mapping[str, Any]]) -> str:
    """'3B', '130M and 1B', 'tiny': the model presets of results, smallest first ('?' for none)."""
    presets = sorted({str(r.get("model")) for r in results},
                     key=lambda p: (int(m[1]) * (1000 if m[2] == "b" else 1)) if (m := SIZE.match(p)) else -1)
    names = [f"{m[1]}{m[2].upper()}" if (m := SIZE.match(p)) else p for p in presets]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names) or "?"


def missing(layout: Layout, matched: Mapping[Tuple[str, str], Sequence[Mapping[str, Any]]],
            results: Sequence[Mapping[str, Any]], columns: Sequence[str], has_acc: bool) -> List[str]:
    """One line per empty part of a table: a row no result matches (naming the field that no result has),
    benchmark columns no result has, and cells a row's results lack while other rows have them."""
    out = []
    name = layout.name
    for (group, row), docs in matched.items():
        where = f"{name}: row {group + '/' if group else ''}{row}"
        if not docs:
            spec = next(s for g in layout.groups if g.label == group for s in g.rows if s.label == row)
            fields = [f"{k}={v}" for k, v in spec.match.items() if not any(matches(r, {k: v}) for r in results)]
            have = {k.split("=")[0]: sorted({str(lookup(r, k.split("=")[0])) for r in results}) for k in fields}
            detail = "; ".join(f"no result has {f} (they have {', '.join(have[f.split('=')[0]][:6])})" for f in fields)
            out.append(f"{where} matches no result" + (f": {detail}" if detail else ""))
            continue
        lacking = [f"{c} {'accuracy' if kind == 'acc' else 'loss'}" for kind in (("acc", "loss") if has_acc else ("loss",))
                   for c in columns[:-1] if all(cell_value(r, (kind, c)) is None for r in docs)]
        if lacking:
            runs = ", ".join(str(r.get("run_name") or r.get("model_dir")) for r in docs)
            out.append(f"{where}: no {', '.join(lacking)} in its results ({runs})")
    absent = [c for c in BENCH_COLUMNS[:-1] if c not in columns]
    if absent and any(matched.values()):
        out.append(f"{name}: no result has {', '.join(absent)} (nexus-eval --tasks ... --data-dir DIR scores "
                   "benchmarks); those columns are left out")
    return out


def _gain_cell(gain: Optional[Difference], kind: str, bold: bool, flag: bool = False) -> Cell:
    if gain is None:
        return Cell("—")
    return Cell(_fmt_diff(gain.mean, kind, gain.ci) + (f" {NOT_SAME_MARK}" if flag else ""), bold)
