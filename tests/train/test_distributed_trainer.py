"""One config, one algorithm on any number of ranks. FSDP2 on two and four CPU processes (gloo) against the
single-device trainer, which accumulates two local micro-batches per inner batch: same losses and weights for
AdamW, Muon and Nexus on the same inner batches, exact resume on 2 ranks, and resume across world sizes
1 -> 2, 2 -> 1 and 4 -> 2 through resharding DCP checkpoints; DeepSpeed ZeRO-2 on two ranks likewise.

Tolerances: losses to 1e-5 relative (the same sums in another order). Weights to 1% of how far each tensor
moved: Nexus's pseudo-gradient anchor - p loses ~1% of its digits to cancellation in fp32 where |p| ~ 1
(norm weights), and runs whose reductions add in another order round differently. Muon to 6%: its
Newton-Schulz iteration runs in bf16 (8 significant bits), so gradients that differ in their last fp32
bits round to different bf16 values; on one device, changing only the micro-batch (the same sums in
another order) already moves Muon's weights by 4.0% of their 4-step update."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from nexus_pretrain.demo import compose_config
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.trainer import Trainer

# NEXUS_TEST_DEVICE=cuda runs the same checks on two GPUs with NCCL (scripts/gpu_multi.sh), in fp32 and
# deterministic mode so that the comparisons mean the same as on CPU.
DEVICE = os.environ.get("NEXUS_TEST_DEVICE", "cpu")
pytestmark = [
    pytest.mark.skipif(not dist.is_available(), reason="torch built without torch.distributed"),
    pytest.mark.skipif(DEVICE == "cuda" and torch.cuda.device_count() < 2, reason="needs two GPUs"),
]
GPU_EXACT = ["backend.precision=fp32", "trainer.deterministic=true"] if DEVICE == "cuda" else []

COMMON = ["model.dim=64", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=128",
          "data.seq_len=32", "data.eval_sequences=4", "trainer.global_batch=8", "optim.inner_steps=2",
          "schedule.warmup_steps=2",
          "schedule.decay_steps=2", "trainer.max_steps=6", "trainer.log_every=1", "trainer.eval_every=0",
          "trainer.checkpoint_every=2", "trainer.keep_last=3", "trainer.export_hf=false",
          "logging.progress_bar=false", f"backend.device={DEVICE}", "optim.weight_decay=0.1", *GPU_EXACT,
          # With the paper's eps 1e-10, Adam turns float reduction-order noise in near-zero (pseudo-)gradient
          # entries (rare tokens' rows) into full-size steps of either sign; 1e-6 keeps the comparison about
          # the distributed mechanics.
          "optim.eps=1e-6"]
# Two inner batches of 4 sequences per step: one rank passes each as 2 local micro-batches of 2 ...
SINGLE = [*COMMON, "trainer.micro_batch=2"]
FSDP2 = [*COMMON, "trainer.micro_batch=2", "backend=fsdp2", f"backend.device={DEVICE}", *GPU_EXACT]  # ... 2 ranks: 1 of 2

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch.distributed as dist
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.train.trainer import Trainer

    for case in json.loads(sys.argv[1]):
        trainer = Trainer(compose_config(case["overrides"]))
        trainer.fit(until_step=case["until"])
    dist.destroy_process_group()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_on_ranks(tmp_path: Path, cases: list, ranks: int = 2) -> None:
    """Run trainer cases ({"overrides": [...], "until": step}) one after another in one torchrun of ``ranks``
    processes (2 unless given)."""
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}",
                           f"--master_port={free_port()}", str(worker), json.dumps(cases)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]


def losses(run_dir: Path) -> dict:
    """Step -> logged training loss and inner loss (a later line for the same step wins, as after a resume)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["loss"], r["inner_loss"]) for r in records if "loss" in r}


def checkpoint_weights(checkpoint: Path) -> dict:
    from nexus_pretrain.train.export import load_checkpoint_weights

    return load_checkpoint_weights(checkpoint)[1]


def assert_close_runs(a: dict, b: dict, steps, rtol=1e-5):
    for step in steps:
        assert a[step] == pytest.approx(b[step], rel=rtol, abs=1e-6), (step, a[step], b[step])


def assert_close_weights(run: Path, reference: Path, init: dict, step: int = 4, share: float = 0.01) -> None:
    """Each tensor at ``step`` within ``share`` of how far the reference run moved it (module docstring)."""
    got = checkpoint_weights(ckpt.checkpoint_root(run) / f"step_{step:08d}")
    want = checkpoint_weights(ckpt.checkpoint_root(reference) / f"step_{step:08d}")
    for key in want:
        assert (got[key] - want[key]).norm() <= share * (want[key] - init[key]).norm(), (run.name, key)


@pytest.mark.slow
def test_fsdp2_matches_single_device_and_resumes_across_world_sizes(tmp_path):
    single = {}
    for optim in ("adamw", "nexus"):
        single[optim] = tmp_path / f"single_{optim}"
        Trainer(compose_config([*SINGLE, f"optim={optim}", f"trainer.run_dir={single[optim]}"])).fit()
    ckpt_1rank = ckpt.checkpoint_root(single["nexus"]) / "step_00000002"

    runs = {name: tmp_path / f"fsdp2_{name}" for name in ("adamw", "nexus", "from_1rank", "resumed")}
    cases = [
        {"overrides": [*FSDP2, "optim=adamw", f"trainer.run_dir={runs['adamw']}"], "until": 4},
        {"overrides": [*FSDP2, "optim=nexus", f"trainer.run_dir={runs['nexus']}"], "until": 4},
        # World size 1 -> 2: a single-device checkpoint loads into FSDP2 shards.
        {"overrides": [*FSDP2, "optim=nexus", f"trainer.run_dir={runs['from_1rank']}",
                       f"trainer.resume={ckpt_1rank}"], "until": 4},
        # Exact resume on 2 ranks, from the step-2 checkpoint of the run above.
        {"overrides": [*FSDP2, "optim=nexus", f"trainer.run_dir={runs['resumed']}",
                       f"trainer.resume={ckpt.checkpoint_root(runs['nexus']) / 'step_00000002'}"], "until": 4},
    ]
    run_on_ranks(tmp_path, cases)

    init = Trainer(compose_config([*SINGLE, f"trainer.run_dir={tmp_path / 'init'}"])).model.state_dict()
    for optim in ("adamw", "nexus"):
        assert_close_runs(losses(runs[optim]), losses(single[optim]), range(1, 5))
        assert_close_weights(runs[optim], single[optim], init)
    assert ckpt.read_meta(ckpt.checkpoint_root(runs["nexus"]) / "step_00000004")["world_size"] == 2
    assert_close_runs(losses(runs["from_1rank"]), losses(single["nexus"]), (3, 4))
    resumed, straight = losses(runs["resumed"]), losses(runs["nexus"])
    assert [resumed[s] for s in (3, 4)] == [straight[s] for s in (3, 4)]  # bit-exact on the same world size

    # World size 2 -> 1: the FSDP2 checkpoint of step 4 continues on one device to step 6.
    back = tmp_path / "back_to_1rank"
    resume = ckpt.checkpoint_root(runs["nexus"]) / "step_00000004"
    trainer = Trainer(compose_config([*SINGLE, "optim=nexus", f"trainer.run_dir={back}", f"trainer.resume={resume}"]))
    trainer.fit()
    assert sorted(losses(back)) == [5, 6]
    assert_close_runs(losses(back), losses(single["nexus"]), (5, 6), rtol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(DEVICE == "cuda" and torch.cuda.device_count() < 4, reason="needs four GPUs")
def test_fsdp2_on_four_ranks_matches_single_device_and_resumes_on_two(tmp_path):
    """World size 4 (one sequence of each inner batch per rank) gives the single-device losses and weights
    for AdamW, Muon and Nexus; its step-2 checkpoint continues on 2 ranks."""
    four = [*COMMON, "trainer.micro_batch=1", "backend=fsdp2", f"backend.device={DEVICE}", *GPU_EXACT]
    single, runs = {}, {name: tmp_path / f"fsdp2x4_{name}" for name in ("adamw", "muon", "nexus")}
    for optim in runs:
        single[optim] = tmp_path / f"single_{optim}"
        Trainer(compose_config([*SINGLE, f"optim={optim}", f"trainer.run_dir={single[optim]}"])).fit(until_step=4)
    run_on_ranks(tmp_path, [{"overrides": [*four, f"optim={o}", f"trainer.run_dir={runs[o]}"], "until": 4}
                            for o in runs], ranks=4)
    resumed = tmp_path / "resumed_on_2"
    step2 = ckpt.checkpoint_root(runs["nexus"]) / "step_00000002"
    run_on_ranks(tmp_path, [{"overrides": [*FSDP2, "optim=nexus", f"trainer.run_dir={resumed}",
                                           f"trainer.resume={step2}"], "until": 4}])

    assert ckpt.read_meta(step2)["world_size"] == 4
    init = Trainer(compose_config([*SINGLE, f"trainer.run_dir={tmp_path / 'init'}"])).model.state_dict()
    for optim in runs:
        assert_close_runs(losses(runs[optim]), losses(single[optim]), range(1, 5))
        assert_close_weights(runs[optim], single[optim], init, share=0.06 if optim == "muon" else 0.01)
    assert sorted(losses(resumed)) == [3, 4]
    assert_close_runs(losses(resumed), losses(single["nexus"]), (3, 4), rtol=1e-4)


@pytest.mark.slow
def test_deepspeed_trainer_matches_single_device_and_resumes(tmp_path):
    pytest.importorskip("deepspeed", reason="DS_BUILD_OPS=0 pip install deepspeed")
    single = tmp_path / "single"
    Trainer(compose_config([*SINGLE, "optim=nexus", f"trainer.run_dir={single}"])).fit(until_step=4)
    run = tmp_path / "zero2"
    deepspeed = [*FSDP2, "backend=deepspeed", "backend.zero_stage=2", f"backend.device={DEVICE}", "optim=nexus",
                 f"trainer.run_dir={run}", "trainer.resume=auto"]
    # Stop at step 2 (a checkpoint), then a second launch resumes from it to step 4.
    cases = [{"overrides": deepspeed, "until": 2}, {"overrides": deepspeed, "until": 4}]
    run_on_ranks(tmp_path, cases)
    assert_close_runs(losses(run), losses(single), range(1, 5))
    meta = ckpt.read_meta(ckpt.checkpoint_root(run) / "step_00000004")
    assert (meta["backend"], meta["world_size"]) == ("deepspeed", 2)
    # nexus-export reads DeepSpeed checkpoints too: same weights as the single-device run, to fp32 noise.
    init = Trainer(compose_config([*SINGLE, f"trainer.run_dir={tmp_path / 'init'}"])).model.state_dict()
    assert_close_weights(run, single, init)
