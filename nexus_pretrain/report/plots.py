"""Figures (PNG and PDF): loss curves per optimizer, per-domain losses, and the paper's Fig. 7a scatter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from nexus_pretrain.extras import require
from nexus_pretrain.report.sweep import run_labels
from nexus_pretrain.rundir.metrics_file import METRICS_FILE, final_metrics, read_metrics


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend; MissingExtra naming the plots extra without matplotlib."""
    matplotlib = require("matplotlib", "plots need")
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # optional: plots extra

    return plt


def save_figure(fig, out_dir: Path, name: str) -> List[Path]:
    """Write ``fig`` as OUT_DIR/NAME.png and .pdf, close it, and return the two paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    for path in paths:  # no creation date in the PDF: the same figure gives the same file
        fig.savefig(path, bbox_inches="tight", dpi=150,
                    metadata={"CreationDate": None} if path.suffix == ".pdf" else None)
    pyplot().close(fig)
    return paths


def series(run_dir: Path, key: str) -> tuple:
    """(steps, values) of one metric over a run's metrics.jsonl."""
    steps, values = [], []
    for row in read_metrics(Path(run_dir) / METRICS_FILE):
        if key in row:
            steps.append(row["step"])
            values.append(row[key])
    return steps, values


def _labels(run_dirs: Sequence[Path]) -> List[str]:
    """Legend entries: each run's swept values (report.sweep: e.g. data=math40 optim=nexus) or directory
    name, with the directory added where several runs (seeds) share them."""
    labels = run_labels(run_dirs)
    return [f"{text} ({Path(d).name})" if labels.count(text) > 1 else text for text, d in zip(labels, run_dirs)]


def loss_curves(run_dirs: Sequence[Path], out_dir: Path) -> List[Path]:
    """Training loss and validation (pretrain) loss against step, one line per run."""
    plt = pyplot()
    fig, (train, val) = plt.subplots(1, 2, figsize=(10, 4))
    for run_dir, name in zip(run_dirs, _labels(run_dirs)):
        train.plot(*series(run_dir, "loss"), label=name)
        val.plot(*series(run_dir, "val/pretrain"), marker="o", label=name)
    for ax, title in ((train, "training loss"), (val, "validation loss (pretrain mixture)")):
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.legend(fontsize=8)
    return save_figure(fig, Path(out_dir), "loss_curves")


def domain_losses(run_dirs: Sequence[Path], out_dir: Path) -> List[Path]:
    """One panel per validation/OOD domain (val/<d>, ood/<d>), one line per run."""
    plt = pyplot()
    keys: List[str] = []
    for run_dir in run_dirs:
        for row in read_metrics(Path(run_dir) / METRICS_FILE):
            for k in row:
                if (k.startswith("val/") or k.startswith("ood/")) and k not in ("val/pretrain", "ood/mean") \
                        and k not in keys:
                    keys.append(k)
    if not keys:
        raise ValueError(f"no val/<domain> or ood/<domain> metrics in {', '.join(str(r) for r in run_dirs)}")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    names = _labels(run_dirs)
    for ax, key in zip(axes[0], keys):
        for run_dir, name in zip(run_dirs, names):
            ax.plot(*series(run_dir, key), marker="o", label=name)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, Path(out_dir), "domain_losses")


def overview(run_dirs: Sequence[Path], out_dir: Path, name: str = "loss_curves") -> List[Path]:
    """One figure comparing runs: training loss, then the validation loss of the mixture, of each domain and
    of the OOD domains (mean), one line per run."""
    plt = pyplot()
    keys = ["loss", "val/pretrain"]
    for run_dir in run_dirs:
        for key in final_metrics(run_dir):
            if key.startswith("val/") and key not in keys:
                keys.append(key)
    keys += ["ood/mean"] if any("ood/mean" in final_metrics(d) for d in run_dirs) else []
    titles = {"loss": "training loss", "val/pretrain": "validation: mixture", "ood/mean": "OOD (never trained on)"}
    columns = min(3, len(keys))
    rows = -(-len(keys) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    names = _labels(run_dirs)
    for ax, key in zip(axes.flat, keys):
        for run_dir, label in zip(run_dirs, names):
            ax.plot(*series(run_dir, key), marker=None if key == "loss" else "o", markersize=3, label=label)
        ax.set_title(titles.get(key, f"validation: {key[4:]}"), fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, Path(out_dir), name)


def downstream_vs_pretrain(results: Sequence[Mapping[str, Any]], out_dir: Path) -> List[Path]:
    """Paper Fig. 7a: average downstream loss against pretrain validation loss, one point per checkpoint.

    Points of one optimizer share a colour; checkpoints of the same run are joined in step order.
    """
    plt = pyplot()
    runs: Dict[tuple, List[Mapping[str, Any]]] = {}
    for r in results:
        m = r.get("metrics", {})
        if m.get("pretrain") is None or (m.get("loss") or {}).get("All") is None:
            continue
        runs.setdefault((r.get("optimizer"), r.get("run_dir") or r.get("model_dir")), []).append(r)
    if not runs:
        raise ValueError("no results with both a pretrain loss and downstream losses to plot")
    colours: Dict[Any, str] = {}
    fig, ax = plt.subplots(figsize=(5, 4))
    for (optimizer, _), points in runs.items():
        points = sorted(points, key=lambda r: r.get("step") or 0)
        first = optimizer not in colours
        colour = colours.setdefault(optimizer, f"C{len(colours)}")
        xs = [p["metrics"]["pretrain"] for p in points]
        ys = [p["metrics"]["loss"]["All"] for p in points]
        ax.plot(xs, ys, marker="o", color=colour, label=str(optimizer) if first else None)
    ax.set_xlabel("pretrain validation loss")
    ax.set_ylabel("average downstream loss")
    ax.set_title("Implicit bias: downstream vs pretrain loss")
    ax.legend(fontsize=8)
    return save_figure(fig, Path(out_dir), "downstream_vs_pretrain")
