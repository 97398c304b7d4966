"""What a set of runs was swept over: inputs expanded from sweep directories, labels from the swept values,
and groups that differ only in their seed.

A run's label is the part of its command line (Hydra's record, ``.hydra/overrides.yaml``) that differs
between the runs compared, seeds left out: ``data=math40 optim=nexus``. Runs without that record are told
apart by their configs instead: keys that differ, with a config group whose ``name`` differs written as
``group=name`` (its other keys follow from the name). Runs with one label differ only in their seed: they
are aggregated (mean ± 95% CI); runs with different labels never are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from nexus_pretrain.data.epochs import logged as logged_epochs
from nexus_pretrain.data.epochs import repeated_data_notes
from nexus_pretrain.report.stats import mean_ci, summarize
from nexus_pretrain.rundir.metrics_file import final_metrics
from nexus_pretrain.rundir.run_name import optimizer_label, run_overrides

SEED_KEYS = ("trainer.seed",)
NOT_SWEPT = ("trainer.run_dir", "hydra", "logging")
"""Keys (or sections) that never tell runs apart: where they were written and how they were logged."""


def is_run_dir(path: Path) -> bool:
    """A nexus-train run directory: it holds metrics.jsonl."""
    return Path(path).is_dir() and (Path(path) / "metrics.jsonl").is_file()


def _numeric_first(path: Path) -> Tuple[int, Any]:
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def expand_inputs(paths: Sequence[Path]) -> Tuple[List[Path], List[Path], List[Path]]:
    """(run directories, results JSON files, ignored files) from nexus-report's inputs. A directory that is
    no run but holds runs (a sweep's directory, ``runs/demo``) stands for them, in job order; a directory
    of results JSONs (or with an eval/ folder of them) for those; files that are neither (a sweep's
    multirun.yaml) are ignored."""
    runs: List[Path] = []
    results: List[Path] = []
    ignored: List[Path] = []
    for path in map(Path, paths):
        if is_run_dir(path):
            runs.append(path)
        elif path.is_dir():
            children = sorted((c for c in path.iterdir() if is_run_dir(c)), key=_numeric_first)
            found = sorted(path.glob("*.json")) + sorted(path.glob("eval/*.json"))
            if not children and not found:
                raise FileNotFoundError(f"{path}: holds no run directory (metrics.jsonl) and no results JSON "
                                        f"(nor in {path}/eval)")
            runs += children
            results += found
        elif path.is_file():
            (results if path.suffix == ".json" else ignored).append(path)
        else:
            raise FileNotFoundError(f"{path} not found")
    return runs, results, ignored


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _counts(key: str) -> bool:
    return key not in SEED_KEYS and not any(key == k or key.startswith(k + ".") for k in NOT_SWEPT)


def _override_pairs(overrides: Sequence[str]) -> Dict[str, str]:
    pairs = {}
    for override in overrides:
        key, eq, value = override.lstrip("+").partition("=")
        if eq and not override.startswith("~") and _counts(key):
            pairs[key] = value
    return pairs


def _config_pairs(configs: Sequence[Mapping[str, Any]]) -> List[Dict[str, str]]:
    flat = [_flatten(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flat for k in f if _counts(k)))
    differing = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    named = {k.rsplit(".", 1)[0] for k in differing if k.endswith(".name") and k.count(".") == 1}
    out = []
    for f in flat:
        pairs = {}
        for key in differing:
            section = key.split(".", 1)[0]
            if section in named and key != f"{section}.name" and _follows_name(flat, section, key):
                continue
            pairs[section if key == f"{section}.name" else key] = "null" if f.get(key) is None else str(f.get(key))
        out.append(pairs)
    return out


def _follows_name(flat: Sequence[Mapping[str, Any]], section: str, key: str) -> bool:
    """Whether every run with one ``section.name`` has one value of ``key`` (so the name tells it)."""
    seen: Dict[Any, str] = {}
    for f in flat:
        value = repr(f.get(key))
        if seen.setdefault(repr(f.get(f"{section}.name")), value) != value:
            return False
    return True


def swept(overrides: Sequence[Optional[Sequence[str]]], configs: Sequence[Optional[Mapping[str, Any]]]
          ) -> List[Dict[str, str]]:
    """Per run, the swept keys and its values (seeds left out): from the command lines when every run has
    one, else from the configs when every run has one, else nothing."""
    if overrides and all(o is not None for o in overrides):
        pairs = [_override_pairs(o) for o in overrides]
        keys = list(dict.fromkeys(k for p in pairs for k in p))
        differing = [k for k in keys if len({p.get(k) for p in pairs}) > 1]
        return [{k: p.get(k, "(default)") for k in differing} for p in pairs]
    if configs and all(c is not None for c in configs):
        return _config_pairs(configs)
    return [{} for _ in overrides or configs]


def label(pairs: Mapping[str, str]) -> str:
    """``key=value key=value`` of swept values."""
    return " ".join(f"{k}={v}" for k, v in pairs.items())


@dataclass
class RunGroup:
    """Runs that differ only in their seed."""

    label: str
    members: List[int]  # indices into the runs compared


def group_by_label(labels: Sequence[str]) -> List[RunGroup]:
    """One group per distinct label, in order of first appearance."""
    groups: Dict[str, RunGroup] = {}
    for i, text in enumerate(labels):
        groups.setdefault(text, RunGroup(text, [])).members.append(i)
    return list(groups.values())


def _config(run_dir: Path) -> Optional[Dict[str, Any]]:
    path = Path(run_dir) / "config.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _hydra_overrides(run_dir: Path) -> Optional[List[str]]:
    return run_overrides(run_dir) if (Path(run_dir) / ".hydra" / "overrides.yaml").is_file() else None


def run_labels(run_dirs: Sequence[Path]) -> List[str]:
    """A label per run: its swept values when every run has Hydra's record of its command line (with the
    recorded config keys in which runs launched alike still differ, tell_apart_by_config); else its
    directory name. Runs that differ in nothing but their seed share one label, their directory names."""
    overrides = [_hydra_overrides(d) for d in run_dirs]
    configs = [_config(d) for d in run_dirs]
    if all(o is not None for o in overrides):
        pairs = tell_apart_by_config(swept(overrides, []), configs)
        if any(pairs):
            return [label(p) for p in pairs]
    elif not (all(configs) and not any(_config_pairs(configs))):
        names = [Path(d).name for d in run_dirs]
        return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]
    return [", ".join(Path(d).name for d in run_dirs)] * len(run_dirs)


def tell_apart_by_config(pairs: Sequence[Mapping[str, str]], configs: Sequence[Optional[Mapping[str, Any]]]
                         ) -> List[Dict[str, str]]:
    """Swept values per run (``pairs``, from command lines), each extended by the recorded config keys in
    which runs with equal pairs still differ (seeds and NOT_SWEPT aside): model.float8=auto recorded as
    true on one GPU and false on another, a default changed between versions. Runs with equal pairs then
    differ in nothing but their seed, and are never averaged across what their command lines left open."""
    out = [dict(p) for p in pairs]
    alike: Dict[str, List[int]] = {}
    for i, p in enumerate(pairs):
        alike.setdefault(label(p), []).append(i)
    for members in alike.values():
        member_configs = [configs[i] for i in members]
        if len(members) > 1 and all(member_configs):
            for i, differing in zip(members, _config_pairs(member_configs)):
                out[i].update(differing)
    return out


def _cell(values: Sequence[float], fmt: str) -> str:
    s = summarize(values)
    if s is None:
        return "—"
    ci = mean_ci(s)
    return fmt.format(s.mean) + ("" if ci is None else f" ± {fmt.format((ci[1] - ci[0]) / 2).lstrip('+')}")


def compare_runs(run_dirs: Sequence[Path], baseline: Optional[str] = None) -> str:
    """A Markdown table of final losses: one row per swept configuration (run_labels), seeds aggregated as
    mean ± half-width of the 95% t interval; optimizer, step, seeds, pretrain and OOD loss, per-domain
    validation loss, train loss. With a baseline run directory, an improvement row under each other row gives
    baseline minus row (positive: the row's loss is lower), as the results tables' improvements do."""
    run_dirs = [Path(d) for d in run_dirs]
    finals = [final_metrics(d) for d in run_dirs]
    configs = [_config(d) for d in run_dirs]
    groups = group_by_label(run_labels(run_dirs))
    domains = sorted({k[4:] for f in finals for k in f if k.startswith("val/") and k != "val/pretrain"})
    # Held-out losses lead: they are measured the same way for every optimizer at every step; the training
    # loss (at the model's weights, docs/metrics.md) comes last.
    columns = ["val/pretrain", "ood/mean"] + [f"val/{d}" for d in domains] + ["loss"]
    headers = ["run", "optimizer", "step", "seeds", "pretrain", "OOD"] + [f"val {d}" for d in domains] + ["train loss"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    base_group = None
    if baseline is not None:
        base_dir = Path(baseline).resolve()
        base_group = next((g for g in groups if any(run_dirs[i].resolve() == base_dir for i in g.members)), None)
        if base_group is None:
            base_final = final_metrics(Path(baseline))
            base_group = RunGroup(Path(baseline).name, [len(finals)])
            finals.append(base_final)
    for group in groups:
        members = [finals[i] for i in group.members]
        name = group.label
        optimizers = sorted({optimizer_label(configs[i]["optim"]) if configs[i] else "?" for i in group.members})
        steps = sorted({int(m.get("step", 0)) for m in members})
        row = [name, "/".join(optimizers), "/".join(map(str, steps)), str(len(members))]
        row += [_cell([m.get(c) for m in members], "{:.4f}") for c in columns]
        lines.append("| " + " | ".join(row) + " |")
        if base_group is not None and group is not base_group:
            base = [finals[i] for i in base_group.members]
            delta = []
            for c in columns:
                a, b = summarize([m.get(c) for m in base]), summarize([m.get(c) for m in members])
                delta.append("—" if a is None or b is None else f"{a.mean - b.mean:+.4f}")
            lines.append("| " + " | ".join([f"improvement over {base_group.label}", "", "", ""] + delta) + " |")
    notes = []
    if base_group is not None and len(groups) > 1:
        notes.append("Improvement: the baseline's loss minus the row's, so positive means the row's loss is lower.")
    if any(len(g.members) > 1 for g in groups):
        notes.append("Rows of several seeds: mean ± half-width of the 95% t interval of the mean.")
    notes += repeated_data_notes(logged_epochs(f) for f in finals)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)

