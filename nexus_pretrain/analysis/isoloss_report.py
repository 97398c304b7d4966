"""What nexus-analyze isoloss shows of a comparison (analysis.isoloss.compare's result): its table and its
figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from nexus_pretrain.analysis.isoloss import Endpoint, interpolant, loss_points
from nexus_pretrain.report.plots import pyplot, save_figure


def file_stem(metric: str) -> str:
    """isoloss_<metric> with / as _: the name of the JSON and figure files."""
    return "isoloss_" + metric.replace("/", "_")


def summary_text(result: Dict[str, Any]) -> str:
    """The per-seed table and the summary line."""
    m = result["metric"]
    lines = [f"{m} at matched {result['matched_on']} ({result['interpolation']} interpolation): "
             f"{result['candidate']} (candidate) - {result['baseline']} (baseline)",
             f"{'seed':>6} {'pretrain':>10} {'baseline':>10} {'candidate':>10} {'diff':>10}"]
    for s in result["seeds"]:
        lines.append(f"{s['seed']:>6} {s['pretrain']:>10.4f} {s['baseline_metric']:>10.4f} "
                     f"{s['candidate_metric']:>10.4f} {s['difference']:>+10.4f}")
    sm = result["summary"]
    ci = "no interval" if sm["ci95"] is None else f"95% CI [{sm['ci95'][0]:+.4f}, {sm['ci95'][1]:+.4f}]"
    lines.append(f"mean {sm['mean']:+.4f}, std {sm['std']:.4f}, {ci} ({sm['method']}); {result['significance']}")
    for e in result.get("excluded", []):
        lines.append(f"excluded seed {e['seed']}: {e['reason']}")
    if "levels" in result:
        lines += ["", f"at each of the baseline's endpoints (mean {result['matched_on']}; candidate - baseline):",
                  f"{'baseline endpoint':<28} {'pretrain':>9} {'seeds':>5} {'mean':>9}  95% CI / verdict"]
        for level in result["levels"]:
            head = f"{level['baseline_endpoint']:<28} {level['pretrain']:>9.4f} {len(level['seeds']):>5}"
            if "summary" not in level:
                lines.append(f"{head} {'—':>9}  every seed outside the candidate's range")
                continue
            sm = level["summary"]
            ci = "no interval" if sm["ci95"] is None else f"[{sm['ci95'][0]:+.4f}, {sm['ci95'][1]:+.4f}]"
            lines.append(f"{head} {sm['mean']:>+9.4f}  {ci}; {level['significance']}")
    return "\n".join(lines)


def plot(result: Dict[str, Any], out_dir: Path, name: str) -> List[Path]:
    """Metric against pretraining loss: every run's endpoints and interpolant (one colour per arm), the
    baseline's matched endpoint (square) and the candidate's value at its loss (star), per seed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    arms = (("baseline", "C0"), ("candidate", "C1"))
    for arm, colour in arms:
        for i, s in enumerate(result["seeds"]):
            endpoints = [Endpoint(Path(e["run"]), e["from_step"], e["step"], e["pretrain"], e["metric"])
                         for e in s[f"{arm}_endpoints"]]
            xs, ys = loss_points(endpoints)
            if len(xs) > 1:
                grid = np.linspace(xs[0], xs[-1], 100)
                ax.plot(grid, interpolant(endpoints, result["interpolation"])(grid), color=colour, alpha=0.5,
                        lw=1)
            ax.scatter(xs, ys, color=colour, s=14, label=f"{arm}: {result[arm]}" if i == 0 else None)
    for i, s in enumerate(result["seeds"]):
        x = s["pretrain"]
        ax.plot([x, x], [s["baseline_metric"], s["candidate_metric"]], color="0.3", lw=0.8, ls=":")
        ax.scatter([x], [s["baseline_metric"]], marker="s", s=40, facecolors="none", edgecolors="C0",
                   label="baseline, final" if i == 0 else None)
        ax.scatter([x], [s["candidate_metric"]], marker="*", s=80, color="C1", edgecolors="k", linewidths=0.5,
                   label="candidate at matched loss" if i == 0 else None)
        ax.annotate(f"s{s['seed']}", (x, s["candidate_metric"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)
    sm = result["summary"]
    ci = "" if sm["ci95"] is None else f", 95% CI [{sm['ci95'][0]:+.4f}, {sm['ci95'][1]:+.4f}]"
    ax.set_title(f"{result['metric']} at matched pretraining loss\n{result['candidate']} - {result['baseline']} = "
                 f"{sm['mean']:+.4f}{ci}",
                 fontsize=10)
    decayed = ", fully decayed" if result.get("points", "decayed") == "decayed" else ", every evaluation"
    ax.set_xlabel(f"pretraining loss ({result['matched_on']}){decayed}")
    ax.set_ylabel(result["metric"])
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, Path(out_dir), name)
