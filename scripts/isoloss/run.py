#!/usr/bin/env python3
"""Run the iso-loss experiment (configs/experiment/isoloss.yaml) on one GPU machine, in waves of concurrent runs.

    python scripts/isoloss/run.py calibrate --out OUT   # tokens/s of wave1's runs trained together, and each
                                                        # wave's projected time
    python scripts/isoloss/run.py wave1 --out OUT       # AdamW and Nexus, seeds 0-5
    python scripts/isoloss/run.py wave2 --out OUT       # the random and parallel controls, seeds 0-3
    python scripts/isoloss/run.py smoke --out OUT       # the whole design at CPU size (tiny model, embedded
                                                        # data), and its report in OUT/report

Every run trains its cooldown branches after its main run (trainer.cooldown_from), so each leaves three fully
decayed endpoints, each with held-out, OOD and downstream losses and the gradient cosine between domains. A
wave (1) prepares the shards from data/isoloss (data_pipelines/minirepro/build_corpus.py --out data/isoloss
--code-chars 80e6) unless they exist, (2) trains its runs concurrently within --budget-seconds (runs still going
at the deadline are stopped with a checkpoint and reported unfinished), and (3) packs every run's small files
into OUT/isoloss_<phase>.tar.gz. scripts/isoloss/report.py turns the unpacked archives into the report.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from nexus_pretrain.experiments.concurrent import cli_command, run_concurrently, train_command
from nexus_pretrain.optim.schedule import phase_steps
from nexus_pretrain.overrides import compose
from nexus_pretrain.rundir.metrics_file import final_metrics

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "isoloss"
RECIPES = sorted((ROOT / "data_pipelines" / "isoloss" / "recipes").glob("*.yaml"))
CALIBRATION_STEPS = 40  # tokens/s is read over the last 10, after compilation

PLAN: Dict[str, List[Tuple[str, int]]] = {
    "wave1": [(optim, seed) for seed in range(6) for optim in ("adamw", "nexus")],
    "wave2": [(optim, seed) for seed in range(4) for optim in ("nexus_random", "nexus_parallel")],
}
# The same design at CPU size: 3 paired seeds, one seed of each control, endpoints at steps 8, 12 and 16.
SMOKE_PLAN = [(optim, seed) for seed in range(3) for optim in ("adamw", "nexus")] + \
    [("nexus_random", 0), ("nexus_parallel", 0)]
SMOKE_OVERRIDES = ["model=tiny", "data=embedded", "data.seq_len=32", "data.eval_sequences=4", "data.num_workers=0",
                   "trainer.global_batch=8", "trainer.micro_batch=4", "optim.inner_steps=2", "trainer.max_steps=16",
                   "schedule.warmup_steps=2", "schedule.decay_steps=4", "trainer.cooldown_from=[4,8]",
                   "trainer.eval_every=16", "trainer.checkpoint_every=4", "trainer.log_every=4",
                   "logging.cosine_every=4", "trainer.compile=false", "trainer.eval_task_limit=4"]

log = logging.getLogger("isoloss")


@dataclass(frozen=True)
class Design:
    """What the runner needs of configs/experiment/isoloss.yaml: tokens per step, and the steps a run
    trains counting its cooldown branches."""

    tokens_per_step: int
    steps: int
    decay_steps: int
    branches: int

    @property
    def steps_with_branches(self) -> int:
        return self.steps + self.branches * self.decay_steps


def design(overrides: Sequence[str] = ()) -> Design:
    """The experiment file's design (with ``overrides``), as nexus-train composes it."""
    cfg = compose(["+experiment=isoloss", *overrides])
    _, decay = phase_steps(cfg.schedule, cfg.trainer.max_steps)
    return Design(cfg.trainer.global_batch * cfg.data.seq_len, cfg.trainer.max_steps, decay,
                  len(cfg.trainer.cooldown_from))


def run_name(optim: str, seed: int) -> str:
    return f"{optim}_seed{seed}"


def run_overrides(optim: str, seed: int, run_dir: Path, device: str) -> List[str]:
    return ["+experiment=isoloss", f"optim={optim}", f"trainer.seed={seed}", f"trainer.run_dir={run_dir}",
            f"backend.device={device}"]


def prepare_shards(workers: int) -> None:
    """nexus-data prepare of the corpus (a no-op when the shards are complete)."""
    if not (CORPUS / "web.jsonl.gz").is_file():
        raise SystemExit(f"{CORPUS}/web.jsonl.gz not found: run data_pipelines/minirepro/build_corpus.py "
                         "--out data/isoloss --code-chars 80e6 first")
    start = time.time()
    codes = run_concurrently({"prepare": cli_command("data", "prepare", *map(str, RECIPES), "--out",
                                                     str(CORPUS / "shards"), "--workers", str(workers),
                                                     "--no-progress")}, CORPUS / "logs", 900, cwd=ROOT)
    if codes["prepare"]:
        raise SystemExit("nexus-data prepare failed; see the log above")
    log.info("shards ready in %.0f s", time.time() - start)


def load_script(path: Path, name: str):
    """A script of this repository (not a package module) loaded as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smoke_benchmarks(out: Path) -> Path:
    """GSM8k- and MATH500-shaped benchmark files from the corpus builder's generator, for the CPU smoke run."""
    build = load_script(ROOT / "data_pipelines" / "minirepro" / "build_corpus.py", "build_corpus")
    build.benchmark_files(out, 8, set())
    return out / "benchmarks"


def calibrate(work: Path, device: str, out: Path) -> Dict[str, float]:
    """Tokens/s per run while wave1's runs train together, and each wave's projected training time."""
    steps = [f"trainer.max_steps={CALIBRATION_STEPS}", "schedule.warmup_steps=2", "schedule.decay_steps=2",
             "trainer.cooldown_from=[]", "trainer.eval_every=1000000", "trainer.checkpoint_every=1000000",
             "logging.cosine_every=0", f"trainer.log_every={CALIBRATION_STEPS // 4}", "trainer.eval_tasks=[]"]
    commands = {run_name(o, s): train_command([*run_overrides(o, s, work / run_name(o, s), device), *steps])
                for o, s in PLAN["wave1"]}
    start = time.time()
    codes = run_concurrently(commands, work / "logs", 600, cwd=ROOT)
    if any(codes.values()):
        raise SystemExit("calibration failed; see the logs above")
    rates = [final_metrics(work / name)["tokens_per_s"] for name in commands]
    plan = design()
    result = {"runs": len(commands), "steps": CALIBRATION_STEPS, "wall_s": time.time() - start,
              "tokens_per_s_per_run_min": min(rates), "tokens_per_s_per_run_max": max(rates),
              "steps_per_run_with_branches": plan.steps_with_branches}
    for phase, runs in PLAN.items():
        # Runs train together; fewer runs share the GPU in wave2, so this overestimates its time.
        result[f"{phase}_projected_train_s"] = (plan.steps_with_branches * plan.tokens_per_step / min(rates)
                                                * len(runs) / len(commands))
    (out / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    log.info("calibration: %s", json.dumps(result))
    return result


def train_wave(runs: Sequence[Tuple[str, int]], runs_dir: Path, device: str, extra: Sequence[str], timeout: float,
               max_parallel: int | None) -> Dict[str, int]:
    commands = {run_name(o, s): train_command([*run_overrides(o, s, runs_dir / run_name(o, s), device), *extra])
                for o, s in runs}
    start = time.time()
    codes = run_concurrently(commands, runs_dir / "logs", timeout, cwd=ROOT, max_parallel=max_parallel)
    log.info("trained %d runs in %.0f s; exit codes %s", len(runs), time.time() - start, codes)
    return codes


def pack(runs_dir: Path, out: Path, phase: str, info: Dict) -> Path:
    """The phase's small files (metrics, configs, branch records, logs) into OUT/isoloss_<phase>.tar.gz."""
    (runs_dir / "phase.json").write_text(json.dumps(info, indent=1) + "\n")
    archive = out / f"isoloss_{phase}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(runs_dir.rglob("*")):
            if path.is_file() and "checkpoints" not in path.parts and path.stat().st_size < 4 * 2**20 \
                    and path.suffix in {".json", ".jsonl", ".yaml", ".log"}:
                tar.add(path, arcname=str(path.relative_to(runs_dir.parent)))
    log.info("packed %s (%.1f MiB)", archive, archive.stat().st_size / 2**20)
    return archive


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=["calibrate", *PLAN, "smoke"])
    p.add_argument("--out", type=Path, required=True, help="where the archive goes (e.g. $OUT)")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "isoloss", help="run directories")
    p.add_argument("--device", default=None, help="default: cuda, or cpu for smoke")
    p.add_argument("--budget-seconds", type=float, default=560, help="wall time of the phase's training")
    p.add_argument("--max-parallel", type=int, default=None, help="runs at once (default: all; smoke: 2)")
    p.add_argument("--runs", default=None, help="comma-separated run names: only these of the phase's plan")
    p.add_argument("--workers", type=int, default=max((os.cpu_count() or 2) - 2, 1), help="prepare workers")
    args = p.parse_args(argv)
    smoke = args.phase == "smoke"
    device = args.device or ("cpu" if smoke else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.phase == "calibrate":
        prepare_shards(args.workers)
        calibrate(args.work / "calibrate", device, args.out)
        return 0
    runs_dir = args.work / args.phase
    if smoke:
        runs = SMOKE_PLAN
        extra = [*SMOKE_OVERRIDES, "trainer.eval_tasks=[gsm8k,math500]",
                 f"trainer.eval_data_dir={smoke_benchmarks(args.work / 'smoke_data')}"]
    else:
        prepare_shards(args.workers)
        runs, extra = PLAN[args.phase], []
    if args.runs:
        wanted = args.runs.split(",")
        unknown = set(wanted) - {run_name(o, s) for o, s in runs}
        if unknown:
            raise SystemExit(f"--runs: {', '.join(sorted(unknown))} not in phase {args.phase}")
        runs = [(o, s) for o, s in runs if run_name(o, s) in wanted]
    codes = train_wave(runs, runs_dir, device, extra, args.budget_seconds - (time.time() - t0),
                       args.max_parallel or (2 if smoke else None))
    info = {"phase": args.phase, "device": device, "runs": [run_name(o, s) for o, s in runs], "exit_codes": codes,
            "total_seconds": time.time() - t0}
    if device.startswith("cuda"):
        import torch  # heavy: only to name the GPU

        info["gpu"], info["torch"] = torch.cuda.get_device_name(0), torch.__version__
    archive = pack(runs_dir, args.out, args.phase, info)
    if smoke:  # the report of the CPU-size experiment, as scripts/isoloss/report.py makes the real one
        report = load_script(Path(__file__).with_name("report.py"), "isoloss_report")
        report.collect([archive], args.out / "report" / "runs")
        report.report(args.out / "report")
        log.info("report: %s", args.out / "report" / "REPORT.md")
    return 0 if not any(codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
