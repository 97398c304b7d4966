#!/usr/bin/env python3
"""Run the mini reproduction (configs/experiment/minirepro.yaml) end to end on one GPU machine.

    python scripts/minirepro/run.py main   --out OUT    # AdamW and Nexus, seeds 0/1/2 (Math10)
    python scripts/minirepro/run.py extra  --out OUT    # Math70 for both, random and nsgd controls (seed 0)
    python scripts/minirepro/run.py smoke  --out OUT --device cpu   # the same pipeline, tiny, on CPU

A phase (1) prepares the shards from data/minirepro (data_pipelines/minirepro/build_corpus.py output)
unless they exist, (2) calibrates: every run of the phase trains a few steps at once to measure the
throughput they get together, and lowers max_steps (scaling warmup, decay and intervals with it) so that
training fits --train-seconds, (3) trains the runs concurrently (small models leave one GPU mostly idle,
so running them side by side costs little per run), (4) evaluates each run with nexus-eval (held-out
pretrain/OOD losses, GSM8k- and MATH500-shaped accuracies and downstream losses), (5) runs the Sec. 5.1
tools on the seed-0 runs (parameter closeness on gsm8k, Fig. 7a over checkpoints) and (6) packs every
small result file into OUT/minirepro_<phase>.tar.gz (metrics, configs, results JSONs, analysis JSONs).
scripts/minirepro/report.py turns the unpacked archives into the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from nexus_pretrain.experiments.concurrent import cli_command, run_concurrently, train_command
from nexus_pretrain.rundir.metrics_file import final_metrics

log = logging.getLogger("minirepro")

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "minirepro"
BENCHMARKS = CORPUS / "benchmarks"
RECIPES = [*sorted((ROOT / "data_pipelines" / "minirepro" / "recipes").glob("*.yaml")),
           ROOT / "data_pipelines" / "recipes" / "embedded_legal.yaml"]
TASKS = "gsm8k,math500"
CALIBRATION_STEPS = 40  # tokens/s is read over the last 10 steps, after compilation (smoke: 8, last 2)


@dataclass
class Run:
    """One training run of a phase: its name and Hydra overrides (beyond +experiment=minirepro)."""

    name: str
    overrides: List[str]


PHASES: Dict[str, List[Run]] = {
    "main": [Run(f"{opt}_math10_seed{s}", [f"optim={opt}", f"trainer.seed={s}"])
             for s in (0, 1, 2) for opt in ("adamw", "nexus")],
    "extra": [Run("adamw_math70_seed0", ["optim=adamw", "data.fixed_shares={math: 0.7}"]),
              Run("nexus_math70_seed0", ["optim=nexus", "data.fixed_shares={math: 0.7}"]),
              Run("random_math10_seed0", ["optim=nexus_random"]),
              Run("nsgd_math10_seed0", ["optim=nsgd"])],
}
# The same pipeline at CPU size: two runs of the tiny model on the same corpus.
SMOKE = [Run("adamw_smoke", ["optim=adamw"]), Run("nexus_smoke", ["optim=nexus"])]
SMOKE_OVERRIDES = ["model=tiny", "data.seq_len=64", "data.eval_sequences=8", "trainer.global_batch=8",
                   "trainer.micro_batch=4", "trainer.compile=false", "data.num_workers=0"]


def prepare_shards(workers: int) -> None:
    """nexus-data prepare of the corpus (incremental: a no-op when the shards are complete)."""
    if not (CORPUS / "web.jsonl.gz").is_file():
        raise SystemExit(f"{CORPUS}/web.jsonl.gz not found: run data_pipelines/minirepro/build_corpus.py first")
    start = time.time()
    subprocess.run(cli_command("data", "prepare", *map(str, RECIPES), "--out", str(CORPUS / "shards"),
                               "--workers", str(workers), "--no-progress"), cwd=ROOT, check=True)
    log.info(f"shards ready in {time.time() - start:.0f} s")


def run_command(run: Run, run_dir: Path, extra: Sequence[str]) -> List[str]:
    return train_command(["+experiment=minirepro", *run.overrides, *extra, f"trainer.run_dir={run_dir}"])


def calibrate(runs: Sequence[Run], work: Path, extra: Sequence[str], device_timeout: float, steps: int) -> float:
    """Tokens/s of one run while all of ``runs`` train together (over the last quarter of ``steps``)."""
    steps = [*step_overrides(steps), "trainer.export_hf=false", "trainer.eval_every=1000000",
             "trainer.checkpoint_every=1000000", "logging.cosine_every=0", f"trainer.log_every={steps // 4}"]
    commands = {r.name: run_command(r, work / r.name, [*extra, *steps]) for r in runs}
    codes = run_concurrently(commands, work / "logs", device_timeout, cwd=ROOT)
    if any(codes.values()):
        raise SystemExit("calibration failed; see the logs above")
    rates = [final_metrics(work / r.name)["tokens_per_s"] for r in runs]
    log.info(f"calibration: {len(runs)} concurrent runs at {min(rates):,.0f}-{max(rates):,.0f} tokens/s each")
    return min(rates)


def step_overrides(steps: int) -> List[str]:
    """max_steps with warmup, decay, eval/checkpoint intervals and cosine interval scaled to it."""
    quarter = max(steps // 4, 1)
    return [f"trainer.max_steps={steps}", f"schedule.warmup_steps={max(math.ceil(0.05 * steps), 1)}",
            f"schedule.decay_steps={max(math.ceil(0.2 * steps), 1)}", f"trainer.eval_every={quarter}",
            f"trainer.checkpoint_every={quarter}", f"logging.cosine_every={max(steps // 8, 1)}"]


def evaluate(runs: Sequence[Run], runs_dir: Path, device: str, limit: int, max_gen_toks: int,
             timeout: float) -> None:
    """nexus-eval of every run: held-out losses, accuracies and downstream losses on TASKS."""
    commands = {f"eval_{r.name}": cli_command("evaluate", str(runs_dir / r.name), "--tasks", TASKS, "--data-dir",
                                      str(BENCHMARKS), "--device", device, "--limit", str(limit),
                                      "--batch-size", "64", "--max-gen-toks", str(max_gen_toks))
                for r in runs}
    run_concurrently(commands, runs_dir / "logs", timeout, cwd=ROOT)


def analyse(runs: Sequence[Run], runs_dir: Path, device: str, limit: int, timeout: float) -> None:
    """Parameter closeness on gsm8k and Fig. 7a over checkpoints, for the seed-0 runs."""
    commands = {}
    for r in runs:
        if not r.name.endswith("seed0") and "smoke" not in r.name:
            continue
        out = runs_dir / r.name / "analysis"
        base = ["--data-dir", str(BENCHMARKS), "--device", device, "--limit", str(limit), "--batch-size", "64",
                "--out", str(out)]
        commands[f"closeness_{r.name}"] = cli_command("analyze", "closeness", str(runs_dir / r.name), "--tasks", "gsm8k",
                                              *base)
        commands[f"fig7a_{r.name}"] = cli_command("analyze", "fig7a", str(runs_dir / r.name), "--tasks", TASKS, *base)
    run_concurrently(commands, runs_dir / "logs", timeout, cwd=ROOT)


def pack(runs_dir: Path, out: Path, phase: str, info: Dict) -> Path:
    """Every small result file of the phase's runs into OUT/minirepro_<phase>.tar.gz."""
    (runs_dir / "phase.json").write_text(json.dumps(info, indent=1) + "\n")
    archive = out / f"minirepro_{phase}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(runs_dir.rglob("*")):
            skip = {"checkpoints", "hf"} & set(path.parts)  # weights stay; so do the copied tokenizer files
            if path.is_file() and not skip and path.stat().st_size < 4 * 2**20 \
                    and path.suffix in {".json", ".jsonl", ".yaml", ".log", ".png", ".txt", ".md"}:
                tar.add(path, arcname=str(path.relative_to(runs_dir.parent)))
    log.info(f"packed {archive} ({archive.stat().st_size / 2**20:.1f} MiB)")
    return archive


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=[*PHASES, "smoke"])
    p.add_argument("--out", type=Path, required=True, help="where the archive goes (e.g. $OUT)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "minirepro", help="run directories")
    p.add_argument("--device", default="cuda")
    p.add_argument("--train-seconds", type=float, default=200, help="steady-state training time the steps fit in")
    p.add_argument("--budget-seconds", type=float, default=570,
                   help="wall time of the whole phase: later stages get what is left, and the archive is written")
    p.add_argument("--max-steps", type=int, default=None, help="cap (default: the experiment's 800; smoke: 8)")
    p.add_argument("--limit", type=int, default=250, help="benchmark examples per task (accuracy and loss)")
    p.add_argument("--workers", type=int, default=max((os.cpu_count() or 2) - 2, 1), help="prepare workers")
    args = p.parse_args(argv)
    t0 = time.time()
    left = lambda reserve: max(t0 + args.budget_seconds - time.time() - reserve, 10)  # noqa: E731
    smoke = args.phase == "smoke"
    runs = SMOKE if smoke else PHASES[args.phase]
    extra = [f"backend.device={args.device}", *(SMOKE_OVERRIDES if smoke else [])]
    cap = args.max_steps or (8 if smoke else 800)
    runs_dir = args.work / args.phase
    args.out.mkdir(parents=True, exist_ok=True)
    prepare_shards(args.workers)
    rate = calibrate(runs, args.work / f"calibrate_{args.phase}", extra, device_timeout=left(300),
                     steps=8 if smoke else CALIBRATION_STEPS)
    tokens_per_step = (8 if smoke else 256) * (64 if smoke else 512)
    steps = min(cap, int(args.train_seconds * rate / tokens_per_step) // 10 * 10)
    if steps < (4 if smoke else 100):
        raise SystemExit(f"only {steps} steps fit in {args.train_seconds} s at {rate:,.0f} tokens/s per run")
    log.info(f"training {len(runs)} runs x {steps} steps ({steps * tokens_per_step / 1e6:.1f}M tokens each) at once")
    commands = {r.name: run_command(r, runs_dir / r.name, [*extra, *step_overrides(steps)]) for r in runs}
    train_start = time.time()
    codes = run_concurrently(commands, runs_dir / "logs", left(150), cwd=ROOT)
    train_seconds = time.time() - train_start
    log.info(f"trained in {train_seconds:.0f} s; exit codes {codes}")
    done = [r for r in runs if codes[r.name] == 0 and (runs_dir / r.name / "hf" / "config.json").is_file()]
    eval_start = time.time()
    evaluate(done, runs_dir, args.device, args.limit, 16 if smoke else 160, timeout=left(75))
    log.info(f"evaluated in {time.time() - eval_start:.0f} s")
    analyse(done, runs_dir, args.device, args.limit, timeout=left(20))
    info = {"phase": args.phase, "device": args.device, "runs": [r.name for r in runs], "steps": steps,
            "calibrated_tokens_per_s_per_run": rate, "train_seconds": train_seconds,
            "eval_seconds": time.time() - eval_start, "total_seconds": time.time() - t0, "exit_codes": codes}
    if args.device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    pack(runs_dir, args.out, args.phase, info)
    return 0 if len(done) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
