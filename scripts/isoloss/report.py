#!/usr/bin/env python3
"""The iso-loss experiment's report: collect the runner's archives, then compare the arms at matched loss.

    python scripts/isoloss/report.py collect OUT/isoloss_wave1.tar.gz ... --into results/isoloss/runs
    python scripts/isoloss/report.py collect OUT/isoloss_wave1.tar.gz --into results/isoloss/reruns
    python scripts/isoloss/report.py report --dir results/isoloss

``collect`` keeps each finished run's small files (config.yaml, metrics.jsonl, its cooldown branches' and
the Hydra overrides; absolute paths of the machine it ran on made relative), a run.json naming the phase and
GPU it ran in, and each phase's record (phases/<phase>_<n>.json). ``report`` writes REPORT.md, claims.json and figures/ from runs/ (and reruns/,
when present) with nexus-analyze isoloss (nexus_pretrain.analysis.isoloss), by the verdict rule of
PROTOCOL.md (nexus_pretrain.report.stats.matched_loss_verdict).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from nexus_pretrain.analysis import isoloss, isoloss_report
from nexus_pretrain.config import ModelConfig
from nexus_pretrain.experiments.compute import BENCH_VOCAB, throughput
from nexus_pretrain.model.presets import non_embedding_parameters, resolve_model_args
from nexus_pretrain.report.stats import matched_loss_verdict, paired_difference, summarize, t975
from nexus_pretrain.rundir.metrics_file import records_by_step

PRIMARY = "ood/mean"
SECONDARY = ("downstream/gsm8k", "downstream/math500")
COSINE = "cos/mean"
MARGIN = 0.015  # the target 95% half-width, and the equivalence margin of the verdict rule
MIN_SEEDS = 3  # fewer seeds with the matched loss in range: the comparison is not testable
ARMS = {"adamw": "AdamW", "nexus": "Nexus", "nexus_random": "random control", "nexus_parallel": "parallel control"}
KEPT = re.compile(r"(config\.yaml|metrics\.jsonl|branch\.json|config_changes\.jsonl|overrides\.yaml)$")
RUNNER_PREFIX = re.compile(r"/[^\s\"']*?/(runs/isoloss[^\s\"']*)")  # an absolute run path -> runs/isoloss/...


# --------------------------------------------------------------------------------------------- collect
def collect(archives: Sequence[Path], into: Path) -> List[str]:
    """Copy every finished run of the archives into ``into``/<run> and each phase record into
    ``into``/../phases/; a later archive's run replaces an earlier one of the same name. Returns the runs."""
    kept: List[str] = []
    phases = into.parent / "phases"
    phases.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
            for phase_file in sorted(Path(tmp).glob("*/phase.json")):
                info = json.loads(phase_file.read_text())
                record = f"{info['phase']}_{len(list(phases.glob(info['phase'] + '_*.json')))}"
                (phases / f"{record}.json").write_text(json.dumps(info, indent=1) + "\n")
                for name in sorted(n for n, code in info["exit_codes"].items() if code == 0):
                    copy_run(phase_file.parent / name, into / name, info, record)
                    kept.append(name)
    return kept


def copy_run(source: Path, target: Path, info: Dict[str, Any], record: str) -> None:
    """A run's kept files (machine paths made relative) and a run.json naming its phase record and GPU."""
    if target.exists():
        shutil.rmtree(target)
    for path in sorted(source.rglob("*")):
        if path.is_file() and KEPT.search(path.name):
            out = target / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(RUNNER_PREFIX.sub(r"\1", path.read_text()))
    where = {k: info[k] for k in ("phase", "gpu", "torch") if k in info}
    (target / "run.json").write_text(json.dumps({**where, "phase_record": record}, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------- report
def arm_runs(runs_dir: Path, arm: str) -> List[Path]:
    """The runs of one arm (named <arm>_seed<N>), by seed."""
    runs = [p for p in runs_dir.glob(f"{arm}_seed*") if re.fullmatch(rf"{arm}_seed\d+", p.name)]
    return sorted(runs, key=lambda p: int(p.name.rsplit("seed", 1)[1]))


def final_record(run_dir: Path) -> Dict[str, Any]:
    """The merged records of a run's final step."""
    by_step = records_by_step(run_dir)
    return by_step[max(by_step)]


def comparison(candidate: List[Path], baseline: List[Path], metric: str, figures: Path) -> Dict[str, Any]:
    """isoloss.compare of two arms, its verdict by the protocol's rule, and its figure."""
    try:
        result = isoloss.compare(candidate, baseline, metric, skip_out_of_range=True)
    except ValueError as error:
        return {"metric": metric, "error": str(error)}
    diff = paired_difference([s["difference"] for s in result["seeds"]])
    result["verdict"] = matched_loss_verdict(diff, MARGIN) if len(result["seeds"]) >= MIN_SEEDS else \
        f"not testable: {len(result['seeds'])} seed(s) in range"
    if result["excluded"]:
        result["verdict"] += f" (seed {', '.join(str(e['seed']) for e in result['excluded'])} out of range, left out)"
    name = f"{candidate[0].name.rsplit('_seed', 1)[0]}_vs_{baseline[0].name.rsplit('_seed', 1)[0]}_" \
           f"{metric.replace('/', '_')}"
    result["figures"] = [str(p.relative_to(figures.parent)) for p in isoloss_report.plot(result, figures, name)]
    return result


def _fmt_ci(summary: Dict[str, Any]) -> str:
    ci = summary["ci95"]
    return "—" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def _half_width(summary: Dict[str, Any]) -> Optional[float]:
    ci = summary["ci95"]
    return None if ci is None else (ci[1] - ci[0]) / 2


def seed_table(result: Dict[str, Any]) -> List[str]:
    lines = ["| seed | baseline pretraining loss | baseline | candidate at that loss | difference |", "|---|---|---|---|---|"]
    for s in result["seeds"]:
        lines.append(f"| {s['seed']} | {s['pretrain']:.4f} | {s['baseline_metric']:.4f} | {s['candidate_metric']:.4f} "
                     f"| {s['difference']:+.4f} |")
    sm = result["summary"]
    lines.append(f"| **mean ± std** | | | | **{sm['mean']:+.4f} ± {sm['std']:.4f}** |")
    return lines


def summary_row(label: str, result: Dict[str, Any]) -> str:
    if "error" in result:
        return f"| {label} | {result['metric']} | — | — | — | not testable: {result['error']} |"
    sm = result["summary"]
    return (f"| {label} | {result['metric']} | {sm['n']} | {sm['mean']:+.4f} ± {sm['std']:.4f} | {_fmt_ci(sm)} "
            f"| {result['verdict']} |")


def equal_steps(runs_dir: Path) -> List[str]:
    """Each arm's final (fully decayed, equal-steps) losses, mean ± std over seeds."""
    keys = ("val/pretrain", PRIMARY, *SECONDARY, COSINE)
    lines = ["| arm | seeds | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for arm, label in ARMS.items():
        finals = [final_record(r) for r in arm_runs(runs_dir, arm)]
        if not finals:
            continue
        cells = []
        for k in keys:
            s = summarize([f[k] for f in finals if k in f])
            cells.append("—" if s is None else f"{s.mean:.4f} ± {s.std:.4f}")
        lines.append(f"| {label} | {len(finals)} | " + " | ".join(cells) + " |")
    return lines


def paired_equal_steps(runs_dir: Path, key: str) -> Dict[str, Any]:
    """Nexus - AdamW of ``key`` at the final step, paired by seed."""
    a = {r.name.rsplit("seed", 1)[1]: final_record(r)[key] for r in arm_runs(runs_dir, "adamw")}
    n = {r.name.rsplit("seed", 1)[1]: final_record(r)[key] for r in arm_runs(runs_dir, "nexus")}
    diffs = [n[s] - a[s] for s in sorted(set(a) & set(n), key=int)]
    d = paired_difference(diffs)
    return {"key": key, "n": len(diffs), "mean": d.mean if d else None, "ci95": list(d.ci) if d and d.ci else None}


def reruns_table(runs_dir: Path, reruns_dir: Path) -> List[str]:
    """The same run (config and seed) trained twice: its final values each time."""
    keys = ("val/pretrain", PRIMARY, *SECONDARY)
    lines = ["| run | GPU | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for rerun in sorted(p for p in reruns_dir.iterdir() if (p / "metrics.jsonl").is_file()):
        for label, path in (("first", runs_dir / rerun.name), ("again", rerun)):
            f = final_record(path)
            lines.append(f"| {rerun.name} ({label}) | {_gpu_of(path)} | " + " | ".join(f"{f[k]:.4f}" for k in keys) + " |")
    return lines


def _gpu_of(run_dir: Path) -> str:
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    return info.get("gpu", "?").replace("NVIDIA ", "")


def every_run_table(runs_dir: Path) -> List[str]:
    """Each run's fully decayed endpoints: (pretraining loss, OOD loss) at each end step, and its GPU."""
    lines = ["| run | GPU | endpoints: step → pretraining loss / OOD loss |", "|---|---|---|"]
    for arm in ARMS:
        for run in arm_runs(runs_dir, arm):
            ends = sorted(isoloss.load_run(run, PRIMARY).endpoints, key=lambda e: e.step)
            cells = "; ".join(f"{e.step} → {e.pretrain:.4f} / {e.metric:.4f}" for e in ends)
            lines.append(f"| {run.name} | {_gpu_of(run)} | {cells} |")
    return lines


def seeds_for(std: float, half_width: float) -> int:
    """The fewest paired seeds whose t interval at this per-seed std has at most this half-width."""
    n = 2
    while t975(n - 1) * std / math.sqrt(n) > half_width:
        n += 1
    return n


def design_at(preset: str, runs: Dict[str, int]) -> Dict[str, Any]:
    """H100-hours of this design (twice the Chinchilla budget, two cooldown branches of 20% each) at a paper
    preset, at sequence length 2048 and vocabulary 32000, from nexus-bench's measured throughput
    (nexus_pretrain.experiments.compute); evaluation not counted."""
    model = ModelConfig(preset=preset)
    tokens = 40 * non_embedding_parameters(resolve_model_args(model, BENCH_VOCAB, 2048))
    per_run = tokens * (1 + 2 * 0.2)
    seconds = sum(count * per_run / throughput(model, optimizer, 2048).tokens_per_s
                  for optimizer, count in runs.items())
    return {"preset": preset, "tokens_per_run": tokens, "tokens_per_run_with_branches": per_run,
            "runs": runs, "h100_hours": seconds / 3600}


def report(root: Path) -> Dict[str, Any]:
    """REPORT.md, claims.json and figures/ of the runs under ``root``/runs (and ``root``/reruns)."""
    runs_dir, figures = root / "runs", root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    adamw, nexus = arm_runs(runs_dir, "adamw"), arm_runs(runs_dir, "nexus")
    random_, parallel = arm_runs(runs_dir, "nexus_random"), arm_runs(runs_dir, "nexus_parallel")
    claims: Dict[str, Any] = {"margin": MARGIN, "primary": comparison(nexus, adamw, PRIMARY, figures)}
    try:  # sensitivity to the interpolation: the same comparison, piecewise linear between endpoints
        linear = isoloss.compare(nexus, adamw, PRIMARY, "linear", skip_out_of_range=True)
        claims["primary_linear"] = {"summary": linear["summary"], "excluded": linear["excluded"]}
    except ValueError as error:
        claims["primary_linear"] = {"error": str(error)}
    claims["secondary"] = [comparison(nexus, adamw, m, figures) for m in SECONDARY]
    claims["cosine"] = comparison(nexus, adamw, COSINE, figures)
    controls = []
    for runs, label in ((random_, "random"), (parallel, "parallel")):
        if runs:
            seeds = {r.name.rsplit("seed", 1)[1] for r in runs}
            paired_adamw = [r for r in adamw if r.name.rsplit("seed", 1)[1] in seeds]
            paired_nexus = [r for r in nexus if r.name.rsplit("seed", 1)[1] in seeds]
            controls.append({"label": f"{label} − AdamW", **comparison(runs, paired_adamw, PRIMARY, figures)})
            controls.append({"label": f"Nexus − {label}", **comparison(paired_nexus, runs, PRIMARY, figures)})
    claims["controls"] = controls
    claims["equal_steps"] = [paired_equal_steps(runs_dir, k) for k in ("val/pretrain", PRIMARY)]
    if "summary" in claims["primary"] and claims["primary"]["summary"]["n"] > 1:
        claims["seeds_for_margin"] = seeds_for(claims["primary"]["summary"]["std"], MARGIN)
    claims["at_130m"] = design_at("llama_130m", {"adamw": len(adamw), "nexus(adamw)": len(nexus) + len(random_)
                                                 + len(parallel)})
    (root / "claims.json").write_text(json.dumps(claims, indent=1) + "\n")
    (root / "REPORT.md").write_text(markdown(root, claims))
    return claims


def markdown(root: Path, claims: Dict[str, Any]) -> str:
    runs_dir = root / "runs"
    primary = claims["primary"]
    out = ["# Iso-loss experiment: Nexus and AdamW at matched pretraining loss",
           "", "Generated by `python scripts/isoloss/report.py report --dir results/isoloss` from the runs under "
           "`runs/` (each run's config.yaml and metrics.jsonl, and its cooldown branches'). Design: "
           "`configs/experiment/isoloss.yaml`; the verdict rule: `PROTOCOL.md`.", ""]
    out += ["## Runs", "", "| phase | GPU | torch | runs finished | wall s |", "|---|---|---|---|---|"]
    for phase in sorted((root / "phases").glob("*.json")):
        info = json.loads(phase.read_text())
        done = sum(1 for c in info["exit_codes"].values() if c == 0)
        out.append(f"| {phase.stem} | {info.get('gpu', '?')} | {info.get('torch', '?')} | {done} of "
                   f"{len(info['exit_codes'])} | {info['total_seconds']:.0f} |")
    out += ["", "A run that did not finish in a phase was trained again, from its start, in a later one."]
    out += ["", f"## Primary endpoint: OOD loss at matched pretraining loss (Nexus − AdamW, {PRIMARY})", ""]
    if "error" in primary:
        out += [f"Not testable: {primary['error']}"]
    else:
        out += seed_table(primary)
        sm = primary["summary"]
        hw = _half_width(sm)
        precision = "no interval" if hw is None else \
            f"half-width {hw:.4f} (target {MARGIN}); at this per-seed spread a half-width of {MARGIN} needs " \
            f"{claims['seeds_for_margin']} paired seeds"
        out += ["", f"95% CI {_fmt_ci(sm)} (paired t over {sm['n']} seeds), {precision}. "
                f"**Verdict: {primary['verdict']}.**"]
        linear = claims["primary_linear"]
        if "summary" in linear:
            out += ["", f"Interpolating piecewise linearly instead of PCHIP: {linear['summary']['mean']:+.4f}, 95% CI "
                    f"{_fmt_ci(linear['summary'])}. A gap between the two comparable to the interval would say the "
                    "endpoints lie too far apart."]
        out += ["", f"![primary]({primary['figures'][0]})"]
    out += ["", "## All comparisons at matched pretraining loss", "",
            "Candidate − baseline, interpolated (PCHIP) at the baseline's final pretraining loss; negative: the "
            "candidate is lower.", "",
            "| comparison | metric | seeds | mean ± std | 95% CI | verdict |", "|---|---|---|---|---|---|"]
    out.append(summary_row("Nexus − AdamW (primary)", primary))
    for r in claims["secondary"]:
        out.append(summary_row("Nexus − AdamW (secondary)", r))
    out.append(summary_row("Nexus − AdamW (gradient cosine)", claims["cosine"]))
    for r in claims["controls"]:
        out.append(summary_row(r["label"], r))
    out += ["", "For the gradient cosine (mean pairwise cosine between the training domains' gradients, at the "
            "fully decayed endpoints) a positive difference means Nexus's domain gradients are more aligned.",
            "", "## At equal steps (context: what the old comparison showed)", ""]
    out += equal_steps(runs_dir)
    for e in claims["equal_steps"]:
        ci = "—" if e["ci95"] is None else f"[{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}]"
        out.append("")
        out.append(f"Nexus − AdamW {e['key']} at the final step, paired over {e['n']} seeds: {e['mean']:+.4f}, "
                   f"95% CI {ci}.")
    if (root / "reruns").is_dir():
        out += ["", "## The same run twice", "",
                "The same config and seed trained again (GPU kernels are not deterministic by default), to size "
                "the run-to-run spread that seed pairing cannot remove:", ""]
        out += reruns_table(runs_dir, root / "reruns")
    big = claims["at_130m"]
    out += ["", "## The same design at 130M", "",
            f"Twice the Chinchilla budget of llama_130m is {big['tokens_per_run'] / 1e9:.2f}B tokens a run, "
            f"{big['tokens_per_run_with_branches'] / 1e9:.2f}B with its two cooldown branches; the "
            f"{sum(big['runs'].values())} runs above would take about **{big['h100_hours']:,.0f} H100-hours** "
            "(sequence length 2048, vocabulary 32000, at the tokens/s nexus-bench measured for AdamW and Nexus on "
            "one H100; evaluation not counted; `nexus_pretrain/experiments/throughput.json`)."]
    out += ["", "## Every run", ""]
    out += every_run_table(runs_dir)
    gpu_s = sum(json.loads(p.read_text())["total_seconds"] for p in (root / "phases").glob("*.json"))
    out += ["", f"The phases' wall times sum to {gpu_s:,.0f} s: the GPU time, or more where phases shared the GPU "
            "at the same time."]
    out += ["", "## Figures", ""]
    for r in [primary, *claims["secondary"], claims["cosine"], *claims["controls"]]:
        for f in r.get("figures", [])[:1]:
            out.append(f"- [{Path(f).stem}]({f})")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="keep the finished runs of runner archives")
    c.add_argument("archives", nargs="+", type=Path)
    c.add_argument("--into", type=Path, required=True, help="e.g. results/isoloss/runs")
    r = sub.add_parser("report", help="REPORT.md, claims.json and figures/ from DIR/runs")
    r.add_argument("--dir", type=Path, default=Path("results/isoloss"))
    args = p.parse_args(argv)
    if args.command == "collect":
        print(f"collected {len(collect(args.archives, args.into))} runs into {args.into}")
    else:
        claims = report(args.dir)
        print((args.dir / "REPORT.md").read_text().split("## All comparisons")[0].split("## Primary")[1][:2000])
        print(f"wrote {args.dir / 'REPORT.md'} ({claims['primary'].get('verdict', 'not testable')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
