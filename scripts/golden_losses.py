"""Golden loss curves: short deterministic CPU runs whose logged numbers a refactor must not change.

    python scripts/golden_losses.py --check     # compare with tests/golden/losses.json (tests/test_golden_losses.py)
    python scripts/golden_losses.py --write     # regenerate it: only in a commit that says why the numbers changed

Cases: AdamW, Nexus and Muon on one process, on FSDP2 over two gloo ranks, and AdamW and Nexus on DeepSpeed
ZeRO-2 over two ranks (ZeRO refuses Muon), each 8 steps of a tiny model on the embedded corpus, with every
process on one intra-op thread. Each step's loss, inner_loss and grad_norm are compared bit for bit when the
torch version and the CPU's kernel capability (torch.backends.cpu.get_cpu_capability()) are those the file was
written with; elsewhere CPU kernels may take other code paths, and they are compared to RTOL.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "losses.json"
RTOL = 1e-5
KEYS = ("loss", "inner_loss", "grad_norm")
STEPS = 8
COMMON = ["model.dim=32", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
          "data.seq_len=32", "data.eval_sequences=2", "trainer.global_batch=8", "optim.inner_steps=2",
          "trainer.micro_batch=2", f"trainer.max_steps={STEPS}", "schedule.warmup_steps=2",
          "schedule.decay_steps=3", "trainer.log_every=1", "trainer.eval_every=0", "trainer.checkpoint_every=0",
          "trainer.export_hf=false", "logging.progress_bar=false", "backend.device=cpu"]
BACKENDS = {"single": [], "fsdp2": ["backend=fsdp2"], "zero2": ["backend=deepspeed", "backend.zero_stage=2"]}
CASES = {f"{backend}/{optim}": [*COMMON, *overrides, f"optim={optim}"]
         for backend, overrides in BACKENDS.items() for optim in ("adamw", "nexus", "muon")
         if not (backend == "zero2" and optim == "muon")}


def run_cases(names: List[str], out_dir: Path) -> None:
    """Train each case into out_dir/<case> in this process (a rank of a torchrun, or alone)."""
    import torch

    torch.set_num_threads(1)
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.train.trainer import Trainer

    for name in names:
        trainer = Trainer(compose_config([*CASES[name], f"trainer.run_dir={out_dir / name.replace('/', '_')}"]))
        try:
            trainer.fit()
        finally:
            if trainer.backend.world_size == 1:
                trainer.close()
    if "RANK" in os.environ:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curves(out_dir: Path) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Every case's curve: step -> {loss, inner_loss, grad_norm}, read from its metrics.jsonl."""
    from nexus_pretrain.rundir.metrics_file import read_metrics

    result = {}
    for name in CASES:
        records = read_metrics(out_dir / name.replace("/", "_") / "metrics.jsonl")
        result[name] = {str(r["step"]): {k: r[k] for k in KEYS} for r in records if "loss" in r}
    return result


def measure() -> Dict[str, Dict[str, Dict[str, float]]]:
    """Run every case (single-process ones here, the distributed ones in one 2-rank torchrun each)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        groups = {backend: [n for n in CASES if n.startswith(backend + "/")] for backend in BACKENDS}
        procs = []
        for backend, names in groups.items():
            launcher = [] if backend == "single" else [
                "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
            procs.append(subprocess.Popen([sys.executable, *launcher, __file__, "--worker", str(out), *names],
                                          env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
        for proc in procs:
            log = proc.communicate(timeout=600)[0]
            if proc.returncode:
                raise SystemExit(f"a golden run failed:\n{log[-4000:]}")
        return curves(out)


def environment() -> Dict[str, str]:
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def compare(got: Dict, golden: Dict) -> List[str]:
    """Lines naming every difference (bitwise in the golden file's environment, else beyond RTOL)."""
    exact = golden["environment"] == environment()
    problems = []
    for name, want in golden["curves"].items():
        have = got.get(name, {})
        if sorted(have) != sorted(want):
            problems.append(f"{name}: logged steps {sorted(have, key=int)} != {sorted(want, key=int)}")
            continue
        for step, values in want.items():
            for key, value in values.items():
                new = have[step][key]
                same = new == value if exact else abs(new - value) <= RTOL * abs(value)
                if not same:
                    problems.append(f"{name} step {step} {key}: {new!r} != golden {value!r}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare with tests/golden/losses.json")
    mode.add_argument("--write", action="store_true", help="regenerate tests/golden/losses.json")
    mode.add_argument("--worker", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_cases(args.worker[1:], Path(args.worker[0]))
        return
    got = measure()
    if args.write:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps({"environment": environment(), "curves": got}, indent=1, sort_keys=True) + "\n")
        print(f"wrote {GOLDEN.relative_to(REPO)}: {len(got)} curves of {STEPS} steps")
        return
    problems = compare(got, json.loads(GOLDEN.read_text()))
    for line in problems:
        print(line)
    if problems:
        raise SystemExit(f"{len(problems)} logged numbers differ from {GOLDEN.relative_to(REPO)}; if the change is "
                         "intended, regenerate with `python scripts/golden_losses.py --write` and say why in the commit")
    print(f"golden losses: {len(got)} curves match")


if __name__ == "__main__":
    main()
