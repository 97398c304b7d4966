"""The demo: prepares the shipped corpus into token shards with the real data pipeline (`nexus-data prepare`
of data_pipelines/recipes/embedded_*.yaml, skipped when already up to date), trains the tiny model on those
shards with AdamW and with Nexus side by side (two `nexus-train` processes, the cores shared between them),
then prints one summary, draws their loss curves and names the next commands to try.
``python -m nexus_pretrain.demo [overrides]``: the overrides apply to both runs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from tqdm import tqdm

from nexus_pretrain.config import TrainConfig
from nexus_pretrain.console import configure_logging, show
from nexus_pretrain.data import store
from nexus_pretrain.data.prepare import ValidationSplitWarning, prepare
from nexus_pretrain.data.tokens import unigram_entropy
from nexus_pretrain.extras import MissingExtra
from nexus_pretrain.overrides import compose
from nexus_pretrain.paths import asset_dir
from nexus_pretrain.report.plots import overview
from nexus_pretrain.report.sweep import compare_runs
from nexus_pretrain.run_data import build_data
from nexus_pretrain.rundir.metrics_file import final_metrics
from nexus_pretrain.threads import set_default_threads

log = logging.getLogger("nexus_pretrain.demo")  # also when run as __main__

RUNS = {"adamw": ["optim=adamw"], "nexus": ["optim=nexus"]}
DEMO_ROOT = Path("runs/demo")
PROGRESS_EVERY_S = 20.0
"""Seconds between progress lines when the output is not a terminal (a log file, CI)."""
NEXT_COMMANDS = (
    ("nexus-train -m optim=adamw,nexus data=math10,math40,math70 trainer.max_steps=60",
     "sweep three mixtures (runs/multirun/DATE/)"),
    ("nexus-report runs/multirun/DATE --plots figs", "that sweep as one table, with figures"),
    ("nexus-data prepare mine=MY_TEXTS.jsonl --out data/own", "your own data (docs/own-data.md)"),
)


def demo_recipes() -> List[Path]:
    """The recipes of the shipped corpus: data_pipelines/recipes/embedded_*.yaml."""
    return sorted(asset_dir("data_pipelines/recipes").glob("embedded_*.yaml"))


def prepare_demo_data(out: Path, recipes: Optional[Sequence[Path]] = None, workers: int = 1) -> List[Dict[str, Any]]:
    """`nexus-data prepare` of the embedded recipes into `out` (incremental: domains already prepared there
    are skipped); one summary per recipe, each with the domain's prepared train/val tokens added.

    One worker: the encoder's Rust thread pool already uses every core, and no process is spawned.
    """
    with warnings.catch_warnings():  # small validation splits are known here: the demo evaluates at seq_len 128
        warnings.simplefilter("ignore", ValidationSplitWarning)
        summaries = prepare(list(recipes or demo_recipes()), out, workers=workers, progress=False)
    for summary in summaries:
        splits = store.complete_manifest(out, summary["domain"])["splits"]
        summary.update({f"{split}_tokens": splits[split]["tokens"] for split in store.SPLITS})
    return summaries


def describe_prepared(summaries: List[Dict[str, Any]], out: Path) -> str:
    """One line: tokens per domain under `out` and this run's tokenization speed (or that it was skipped)."""
    domains = ", ".join(f"{s['domain']} {s['train_tokens'] + s['val_tokens']:,}" for s in summaries)
    tokens, seconds = sum(s["tokens"] for s in summaries), sum(s["seconds"] for s in summaries)
    if tokens == 0:
        how = "already prepared, skipped"
    else:
        how = f"{tokens:,} tokens in {seconds:.1f}s = {tokens / max(seconds, 1e-9):,.0f} tokens/s"
    return f"Data: {out} (nexus-data prepare, embedded recipes) -- tokens per domain: {domains}; {how}"


def compose_config(overrides: List[str]) -> TrainConfig:
    """The train config Hydra composes from configs/ with these overrides (as nexus-train does)."""
    return compose(overrides)


def run_overrides(name: str, data_dir: Path, run_dir: Path, extra: Sequence[str]) -> List[str]:
    """The nexus-train command line of one demo run."""
    return [*RUNS[name], "data=shards", f"data.path={data_dir}", f"trainer.run_dir={run_dir}",
            "logging.progress_bar=false", "trainer.checkpoint_every=0", *extra]


def _last_step(run_dir: Path) -> int:
    """The last step a running run logged (0 before its first line; a line being written is skipped)."""
    path = run_dir / "metrics.jsonl"
    step = 0
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                step = max(step, int(json.loads(line).get("step", 0)))
            except ValueError:
                pass
    return step


class Progress:
    """The runs' progress from their metrics.jsonl: a bar on a terminal, a line every PROGRESS_EVERY_S
    seconds otherwise."""

    def __init__(self, run_dirs: Dict[str, Path], steps: int, terminal: bool):
        self.run_dirs, self.steps, self.started = run_dirs, steps, time.perf_counter()
        self.bar = None
        self.next_line = PROGRESS_EVERY_S
        if terminal:
            self.bar = tqdm(total=steps * len(run_dirs), desc=" + ".join(run_dirs), unit="step", dynamic_ncols=True)

    def update(self, final: bool = False) -> None:
        """Show the steps done so far."""
        done = {name: _last_step(d) for name, d in self.run_dirs.items()}
        if self.bar is not None:
            self.bar.update(sum(done.values()) - self.bar.n)
            if final:
                self.bar.close()
            return
        elapsed = time.perf_counter() - self.started
        if final or elapsed >= self.next_line:
            self.next_line = elapsed + PROGRESS_EVERY_S
            steps = ", ".join(f"{name} {step}/{self.steps}" for name, step in done.items())
            log.info(f"  {elapsed:4.0f}s  steps: {steps}")


def train_side_by_side(names: Sequence[str], data_dir: Path, root: Path, extra: Sequence[str],
                       steps: int) -> Dict[str, Path]:
    """Run each named demo run as its own nexus-train process, all at once (each with the OMP_NUM_THREADS this
    process has); their output goes to ROOT/<name>.log. Returns the run directories; exits naming the log
    of a run that failed."""
    run_dirs = {name: root / name for name in names}
    processes = {}
    for name, run_dir in run_dirs.items():
        if run_dir.exists():  # the demo's run of an earlier invocation: the demo always starts over
            shutil.rmtree(run_dir)
        log = open(root / f"{name}.log", "w")
        processes[name] = (subprocess.Popen([sys.executable, "-m", "nexus_pretrain",
                                             *run_overrides(name, data_dir, run_dir, extra)],
                                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)), log)
    progress = Progress(run_dirs, steps, sys.stderr.isatty())
    while any(p.poll() is None for p, _ in processes.values()):
        time.sleep(0.5)
        progress.update()
    progress.update(final=True)
    for _, log in processes.values():
        log.close()
    failed = [name for name, (p, _) in processes.items() if p.returncode != 0]
    for name in failed:
        tail = (root / f"{name}.log").read_text().strip().splitlines()[-15:]
        log.error(f"the {name} run failed (exit {processes[name][0].returncode}); the end of {root / name}.log:\n  "
                  + "\n  ".join(tail))
    if failed:
        sys.exit(1)
    return run_dirs


def unigram_baseline(cfg: TrainConfig) -> float:
    """Mixture-weighted per-domain unigram entropy of a run's training data (nats/token): the loss of a model
    that knows each domain's token frequencies and nothing else."""
    sampler = build_data(cfg.data, seed=0).sampler
    return sum(unigram_entropy(sampler.streams[d]) * sampler.weights[d] for d in sampler.domains)


def main(argv: List[str] | None = None) -> Dict[str, Dict[str, float]]:
    """Prepare the data, train both runs side by side, print the summary and write the figure; returns each
    run's final metrics."""
    configure_logging()
    extra = sys.argv[1:] if argv is None else argv
    root, started = DEMO_ROOT, time.perf_counter()
    data_dir = root / "data"
    log.info(describe_prepared(prepare_demo_data(data_dir), data_dir))
    cfg = compose_config(run_overrides("nexus", data_dir, root / "nexus", extra))
    threads = set_default_threads(concurrent=len(RUNS))  # the cores shared between the runs, which inherit it
    log.info(f"Training {' and '.join(RUNS)} side by side: {cfg.trainer.max_steps} steps of "
             f"{cfg.trainer.global_batch}x{cfg.data.seq_len} tokens each, the tiny model, "
             f"{threads or os.environ['OMP_NUM_THREADS']} thread(s) each; logs in {root}/<run>.log")
    run_dirs = train_side_by_side(list(RUNS), data_dir, root, extra, cfg.trainer.max_steps)
    finals = {name: final_metrics(d) for name, d in run_dirs.items()}
    show()
    show(compare_runs(list(run_dirs.values()), baseline=str(run_dirs["adamw"])))
    show(f"\nval: held-out documents of each training domain; pretrain: their mixture; OOD: "
          f"{', '.join(cfg.data.ood_domains)}, never trained on. A model that knows only each domain's token "
          f"frequencies would score {unigram_baseline(cfg):.3f} on the mixture.")
    try:
        show(f"Loss curves: {overview(list(run_dirs.values()), root)[0]}")
    except MissingExtra as error:
        log.warning(f"No figure: {error}")
    show(f"\nDemo finished in {time.perf_counter() - started:.0f}s. Everything is in {root}/: per run "
          "config.yaml, metrics.jsonl and the exported model hf/.\nNext, try:")
    width = max(len(command) for command, _ in NEXT_COMMANDS)
    for command, what in NEXT_COMMANDS:
        show(f"  {command:<{width}}  # {what}")
    return finals


if __name__ == "__main__":
    main()
