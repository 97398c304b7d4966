"""Iso-loss comparison: a candidate's metric at the baseline's pretraining loss, paired by seed.

The paper's claim is conditional: at the *same* pretraining loss, Nexus has lower downstream and OOD loss.
Comparing runs at equal steps mixes that with training speed. Here each run contributes its fully decayed
endpoints (its final evaluation, and that of each of its cooldown branches, ``RUN/cooldown/step_XXXXXXXX``):
points of (pretraining loss ``val/pretrain``, metric). For each seed, the candidate's metric is interpolated
(monotone in pretraining loss: PCHIP, or piecewise linear) at the pretraining loss of the baseline's main
run, never extrapolated; the per-seed differences (candidate - baseline, negative: the candidate is lower)
get a paired t interval and the reports' significance rule (report.stats).

``points="all"`` also takes every earlier evaluation of a main run (stable-phase ones included), the view of
the paper's Fig. 7a for runs without branches; such points mix learning-rate states, so the default uses fully
decayed endpoints only. ``levels`` also matches at each of the baseline's other endpoints (its cooldown
branches'), one paired comparison per endpoint: whether the difference holds along the run, not only at
its end.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from nexus_pretrain.analysis.forward import recorded_forward
from nexus_pretrain.report.stats import (LOSS_THRESHOLD, Difference, paired_difference, significant_gain,
                                        summarize)
from nexus_pretrain.rundir.metrics_file import records_by_step
from nexus_pretrain.rundir.run_name import optimizer_label

PRETRAIN = "val/pretrain"
METRIC_PREFIXES = ("ood/", "val/", "downstream/", "cos/")
BRANCHES_DIR = "cooldown"
BRANCH_FILE = "branch.json"
CONFIG_FILE = "config.yaml"
INTERPOLATIONS = ("pchip", "linear")
POINTS = ("decayed", "all")


@dataclass(frozen=True)
class Endpoint:
    """An evaluation: the final record of a main run (from_step None) or of a cooldown branch (fully decayed), or
    with points="all" an earlier evaluation of a main run."""

    run_dir: Path
    from_step: Optional[int]
    step: int
    pretrain: float
    metric: float

    def as_dict(self) -> Dict[str, Any]:
        return {"run": str(self.run_dir), "from_step": self.from_step, "step": self.step,
                "pretrain": self.pretrain, "metric": self.metric}


@dataclass(frozen=True)
class Run:
    """A run's seed, optimizer label and endpoints (its own first, then its branches by step)."""

    path: Path
    seed: int
    label: str
    endpoints: Tuple[Endpoint, ...]
    forward: Dict[str, str] = field(default_factory=dict)
    """recorded_forward of the run's config: what decides the forward its losses come from."""

    @property
    def main(self) -> Endpoint:
        return self.endpoints[0]

    @property
    def loss_range(self) -> Tuple[float, float]:
        losses = [e.pretrain for e in self.endpoints]
        return min(losses), max(losses)


def check_metric(metric: str) -> None:
    """ValueError unless ``metric`` names a loss compared at matched pretraining loss."""
    if metric == PRETRAIN or not metric.startswith(METRIC_PREFIXES) or metric.endswith("/"):
        raise ValueError(f"--metric {metric!r}: choose ood/mean, ood/<domain>, val/<domain>, downstream/<task> or "
                         f"cos/mean (a loss or gradient cosine the runs log at their final evaluation; {PRETRAIN} "
                         "is what is matched)")


def check_interpolation(method: str) -> None:
    """ValueError for an unknown method, or for PCHIP without scipy."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"interpolation {method!r}: choose {' or '.join(INTERPOLATIONS)}")
    if method == "pchip":
        try:
            import scipy.interpolate  # noqa: F401
        except ImportError:
            raise ValueError("PCHIP interpolation needs scipy: pip install scipy (or use --interpolation "
                             "linear)") from None


def _job_order(path: Path) -> Tuple[int, Any]:
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def _config(run_dir: Path) -> Dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {run_dir} a nexus-train run directory?")
    cfg = yaml.safe_load(path.read_text()) or {}
    trainer = cfg.get("trainer") or {}
    for key in ("seed", "max_steps"):
        if not isinstance(trainer.get(key), int):
            raise ValueError(f"{path}: no integer trainer.{key}")
    return cfg


def run_dirs(paths: Sequence[Path]) -> List[Path]:
    """The run directories named on a command line: a run (it holds config.yaml) stands for itself, any other
    directory (a sweep's) for its children that hold one, in job order."""
    found: List[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise FileNotFoundError(f"{path} not found" if not path.exists() else f"{path} is not a directory")
        if (path / CONFIG_FILE).is_file():
            if (path / BRANCH_FILE).is_file():
                raise ValueError(f"{path} is a cooldown branch; give its parent run, which stands for all its "
                                 "branches")
            found.append(path)
            continue
        children = sorted((c for c in path.iterdir() if (c / CONFIG_FILE).is_file()), key=_job_order)
        if not children:
            raise FileNotFoundError(f"{path}: neither a run directory ({CONFIG_FILE}) nor a directory of runs")
        found += children
    unique = list({p.resolve(): p for p in found}.values())
    return unique


def _final_endpoint(run_dir: Path, metric: str, from_step: Optional[int]) -> Endpoint:
    """The record(s) at the run's trainer.max_steps, with its pretraining loss and ``metric``."""
    max_steps = _config(run_dir)["trainer"]["max_steps"]
    by_step = records_by_step(run_dir)
    final = by_step.get(max_steps, {})
    if PRETRAIN not in final:
        last = max(by_step) if by_step else None
        raise ValueError(f"{run_dir}: no evaluation ({PRETRAIN}) at its final step {max_steps} (last step "
                         f"logged: {last}); let it finish (a run that stopped early resumes with "
                         "trainer.resume=auto)")
    if metric not in final:
        logged = sorted(k for k in final if k.startswith(METRIC_PREFIXES) and k != PRETRAIN)
        raise ValueError(f"{run_dir}: no {metric} at its final step {max_steps}; it logged "
                         f"{', '.join(logged) or 'no other loss'}")
    values = {k: float(final[k]) for k in (PRETRAIN, metric)}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{run_dir}: {bad[0]} at step {max_steps} is {values[bad[0]]}")
    return Endpoint(run_dir, from_step, max_steps, values[PRETRAIN], values[metric])


def branch_dirs(run_dir: Path) -> List[Tuple[int, Path]]:
    """(branch step, directory) of a run's cooldown branches, by step."""
    root = Path(run_dir) / BRANCHES_DIR
    if not root.is_dir():
        return []
    out = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        info_file = path / BRANCH_FILE
        if not info_file.is_file():
            raise FileNotFoundError(f"{info_file} not found; is {path} a cooldown branch?")
        out.append((int(json.loads(info_file.read_text())["from_step"]), path))
    return sorted(out, key=lambda b: b[0])


def _earlier_evaluations(run_dir: Path, metric: str, before: int) -> List[Endpoint]:
    """Every evaluation of a run before step ``before`` that logged both its pretraining loss and ``metric``."""
    return [Endpoint(run_dir, None, step, float(r[PRETRAIN]), float(r[metric]))
            for step, r in records_by_step(run_dir).items()
            if step < before and PRETRAIN in r and metric in r
            and math.isfinite(r[PRETRAIN]) and math.isfinite(r[metric])]


def load_run(run_dir: Path, metric: str, points: str = "decayed") -> Run:
    """A run with its fully decayed endpoints: its own final evaluation and each cooldown branch's; with
    ``points="all"`` also every earlier evaluation of the run."""
    if points not in POINTS:
        raise ValueError(f"points {points!r}: choose {' or '.join(POINTS)}")
    run_dir = Path(run_dir)
    cfg = _config(run_dir)
    endpoints = [_final_endpoint(run_dir, metric, None)]
    endpoints += [_final_endpoint(path, metric, step) for step, path in branch_dirs(run_dir)]
    if points == "all":
        endpoints += _earlier_evaluations(run_dir, metric, endpoints[0].step)
    label = optimizer_label(cfg["optim"]) if isinstance(cfg.get("optim"), dict) else "?"
    return Run(run_dir, cfg["trainer"]["seed"], label, tuple(endpoints), recorded_forward(cfg, metric))


def check_same_forward(candidate: Run, baseline: Run) -> None:
    """ValueError naming the setting when two runs' losses come from different forwards (recorded_forward)."""
    for key in sorted(set(candidate.forward) & set(baseline.forward)):
        if candidate.forward[key] != baseline.forward[key]:
            raise ValueError(f"seed {candidate.seed}: {candidate.path} logged its losses with {key}="
                             f"{candidate.forward[key]} and {baseline.path} with {key}={baseline.forward[key]}: their "
                             f"{PRETRAIN} come from different forwards, so equal values are not the same loss; "
                             "compare runs evaluated alike (model.float8_eval=bf16 evaluates an FP8 run through "
                             "bf16 matmuls; nexus-eval scores exported models alike)")


def loss_points(endpoints: Sequence[Endpoint]) -> Tuple[np.ndarray, np.ndarray]:
    """Pretraining losses (sorted, distinct) and metrics; endpoints with equal loss are averaged."""
    by_loss: Dict[float, List[float]] = {}
    for e in endpoints:
        by_loss.setdefault(e.pretrain, []).append(e.metric)
    xs = sorted(by_loss)
    return np.array(xs), np.array([sum(by_loss[x]) / len(by_loss[x]) for x in xs])


def interpolant(endpoints: Sequence[Endpoint], method: str) -> Callable[[Any], np.ndarray]:
    """The metric as a function of pretraining loss through the endpoints (PCHIP or piecewise linear),
    defined on their loss range only."""
    check_interpolation(method)
    xs, ys = loss_points(endpoints)
    if len(xs) == 1:
        return lambda x: np.where(np.asarray(x, dtype=float) == xs[0], ys[0], np.nan)
    if method == "linear":
        return lambda x: np.interp(x, xs, ys, left=np.nan, right=np.nan)
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator(xs, ys, extrapolate=False)


def match(candidate: Run, baseline: Run, method: str, at: Optional[Endpoint] = None) -> Dict[str, Any]:
    """One seed: the candidate's metric interpolated at the pretraining loss of the baseline's endpoint ``at``
    (default: its main run's); ValueError (naming the run and its range) where that loss lies outside the
    candidate's endpoints."""
    at = at or baseline.main
    target = at.pretrain
    low, high = candidate.loss_range
    if not low <= target <= high:
        fix = ("train it longer" if target < low else "branch it earlier (trainer.cooldown_from)")
        raise ValueError(f"seed {candidate.seed}: the baseline's pretraining loss {target:.5f} ({baseline.path}) "
                         f"lies outside {candidate.path}'s range [{low:.5f}, {high:.5f}] "
                         f"({len(candidate.endpoints)} endpoint(s)); no extrapolation: {fix}")
    value = float(interpolant(candidate.endpoints, method)(target))
    return {"seed": candidate.seed, "candidate_run": str(candidate.path), "baseline_run": str(baseline.path),
            "pretrain": target, "baseline_metric": at.metric, "candidate_metric": value,
            "difference": value - at.metric, "candidate_range": [low, high],
            "candidate_endpoints": [e.as_dict() for e in candidate.endpoints],
            "baseline_endpoints": [e.as_dict() for e in baseline.endpoints]}


def pair_by_seed(candidates: Sequence[Run], baselines: Sequence[Run]) -> List[Tuple[Run, Run]]:
    """(candidate, baseline) runs with the same trainer.seed, by seed; ValueError for a seed that two runs of
    one arm share or that only one arm has."""
    arms = {}
    for name, runs in (("candidate", candidates), ("baseline", baselines)):
        by_seed: Dict[int, Run] = {}
        for run in runs:
            if run.seed in by_seed:
                raise ValueError(f"two {name} runs have seed {run.seed}: {by_seed[run.seed].path} and {run.path}")
            by_seed[run.seed] = run
        arms[name] = by_seed
    only_c = sorted(set(arms["candidate"]) - set(arms["baseline"]))
    only_b = sorted(set(arms["baseline"]) - set(arms["candidate"]))
    if only_c or only_b:
        sides = [f"candidate seed(s) {only_c} have no baseline run"] if only_c else []
        sides += [f"baseline seed(s) {only_b} have no candidate run"] if only_b else []
        raise ValueError(f"unpaired seeds: {'; '.join(sides)}; give both arms the same trainer.seed values")
    return [(arms["candidate"][s], arms["baseline"][s]) for s in sorted(arms["candidate"])]


def _arm_label(runs: Sequence[Run], default: str) -> str:
    labels = {r.label for r in runs}
    return labels.pop() if len(labels) == 1 else default


def _negated(diff: Difference) -> Difference:
    return Difference(-diff.mean, None if diff.ci is None else (-diff.ci[1], -diff.ci[0]), diff.n, diff.paired)


def significance(differences: Sequence[float]) -> str:
    """The reports' rule (report.stats.significant_gain) applied to per-seed candidate - baseline losses."""
    diff = paired_difference(differences)
    if diff is None:
        return "no differences"
    if significant_gain(_negated(diff), LOSS_THRESHOLD):
        return f"candidate lower: by more than {LOSS_THRESHOLD}, 95% CI excludes 0"
    if significant_gain(diff, LOSS_THRESHOLD):
        return f"baseline lower: by more than {LOSS_THRESHOLD}, 95% CI excludes 0"
    if diff.ci is None:
        return "not significant: one seed, no interval"
    return f"not significant: not both beyond {LOSS_THRESHOLD} and a 95% CI excluding 0"


def compare(candidate_paths: Sequence[Path], baseline_paths: Sequence[Path], metric: str,
            method: str = "pchip", points: str = "decayed", skip_out_of_range: bool = False,
            levels: bool = False) -> Dict[str, Any]:
    """The iso-loss comparison of two arms of runs (each a run or a directory of runs) on one metric: per seed,
    the baseline's metric, the candidate's at the same pretraining loss and their difference; the mean,
    std and paired t 95% interval of the differences and their significance. ValueError (one line) for
    unpaired seeds, runs whose losses come from different forwards (check_same_forward), extrapolation,
    missing or unfinished evaluations. ``points``: see load_run. With
    ``skip_out_of_range`` a seed whose matched loss lies outside the candidate's range is left out and listed
    under "excluded" (with the reason) instead of failing the comparison. With ``levels`` the result also
    has "levels": the same comparison at each of the baselines' endpoints (match_levels)."""
    check_metric(metric)
    check_interpolation(method)
    candidates = [load_run(p, metric, points) for p in run_dirs(candidate_paths)]
    baselines = [load_run(p, metric, points) for p in run_dirs(baseline_paths)]
    overlap = {r.path.resolve() for r in candidates} & {r.path.resolve() for r in baselines}
    if overlap:
        raise ValueError(f"{sorted(map(str, overlap))[0]} is in both arms")
    seeds, excluded = [], []
    pairs = pair_by_seed(candidates, baselines)
    for c, b in pairs:
        check_same_forward(c, b)
    for c, b in pairs:
        try:
            seeds.append(match(c, b, method))
        except ValueError as error:
            if not skip_out_of_range:
                raise
            excluded.append({"seed": c.seed, "reason": str(error)})
    if not seeds:
        raise ValueError(f"every seed lies outside the candidate's range: {excluded[0]['reason']}")
    diffs = [s["difference"] for s in seeds]
    result = {"metric": metric, "matched_on": PRETRAIN, "interpolation": method, "points": points,
              "candidate": _arm_label(candidates, "candidate"), "baseline": _arm_label(baselines, "baseline"),
              "difference": f"candidate - baseline {metric} at the baseline's final {PRETRAIN}",
              "seeds": seeds, "excluded": excluded, "summary": _summary(diffs), "significance": significance(diffs)}
    if levels:
        result["levels"] = match_levels(pairs, method)
    return result


def _summary(diffs: Sequence[float]) -> Dict[str, Any]:
    diff, spread = paired_difference(diffs), summarize(diffs)
    return {"mean": diff.mean, "std": spread.std, "n": diff.n, "ci95": None if diff.ci is None else list(diff.ci),
            "method": diff.method}


def level_name(endpoint: Endpoint, run: Run) -> str:
    """Which of a run's endpoints: "final" (its main run's), "cooldown from step S" or, with points="all",
    "step S" (an earlier evaluation)."""
    if endpoint == run.main:
        return "final"
    return f"cooldown from step {endpoint.from_step}" if endpoint.from_step is not None else f"step {endpoint.step}"


def match_levels(pairs: Sequence[Tuple[Run, Run]], method: str) -> List[Dict[str, Any]]:
    """Per endpoint of the baselines (named by level_name, the same in every seed's run), the candidate matched
    at its pretraining loss, seed by seed, with the summary and significance of the differences; a seed out of
    the candidate's range there is listed under "excluded". Highest mean pretraining loss first (earliest)."""
    by_level: Dict[str, List[Tuple[Run, Run, Endpoint]]] = {}
    for candidate, baseline in pairs:
        for endpoint in baseline.endpoints:
            by_level.setdefault(level_name(endpoint, baseline), []).append((candidate, baseline, endpoint))
    levels = []
    for name, items in by_level.items():
        seeds, excluded = [], []
        for candidate, baseline, endpoint in items:
            try:
                matched = match(candidate, baseline, method, endpoint)
            except ValueError as error:
                excluded.append({"seed": candidate.seed, "reason": str(error)})
                continue
            seeds.append({k: matched[k] for k in ("seed", "pretrain", "baseline_metric", "candidate_metric",
                                                  "difference")})
        level = {"baseline_endpoint": name, "pretrain": float(np.mean([e.pretrain for _, _, e in items])),
                 "seeds": seeds, "excluded": excluded}
        if seeds:
            diffs = [s["difference"] for s in seeds]
            level.update(summary=_summary(diffs), significance=significance(diffs))
        levels.append(level)
    return sorted(levels, key=lambda level: -level["pretrain"])
