"""DeepSpeed backend: ZeRO-1/2/3 on two CPU processes (gloo) give the single-device parameters for AdamW and
Nexus, and save -> load into a fresh engine -> continue is bit-identical to the uninterrupted run."""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nexus_pretrain.config import BackendConfig, OptimConfig
from nexus_pretrain.train.backends.deepspeed import check_supported, ds_config

HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None

WORKER = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from nexus_pretrain.config import BackendConfig, OptimConfig
    from nexus_pretrain.model.llama import Llama, ModelArgs, lm_loss
    from nexus_pretrain.train.backends.deepspeed import DeepSpeedBackend
    from nexus_pretrain.train.backends.single import SingleDevice

    out_path, ckpt_root, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    ARGS = ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, vocab_size=64, max_seq_len=16)
    K, STEPS, SEQ, GLOBAL_MICRO = 2, 3, 9, 4
    MULTIPLIERS = [0.5, 1.0, 0.8]
    gen = torch.Generator().manual_seed(123)
    DATA = torch.randint(0, ARGS.vocab_size, (STEPS, K, GLOBAL_MICRO, SEQ), generator=gen)
    # Nexus's normalized inner steps and Adam's first steps (~lr * sign) amplify fp32 rounding: two equally
    # valid single-device fp32 runs (full micro-batch vs. its two halves backward'ed separately) differ by
    # ~1e-5 (relative L2 per tensor; ~1e-4 elementwise) after 3 steps, 50x more than AdamW runs do. So
    # each case also measures that floor, and eps=1e-6 (not the paper's 1e-10) keeps it small.
    NEXUS = dict(name="nexus", lr=1e-2, weight_decay=0.1, inner_lr=0.05, eps=1e-6, inner_steps=K)
    OPTIMS = {
        "adamw": dict(name="adamw", lr=1e-2, weight_decay=0.1, max_grad_norm=0.5),
        "nexus": dict(NEXUS, max_grad_norm=0.06),
        "nsgd": dict(NEXUS, variant="nsgd", max_grad_norm=0.03),
        "nexus_dot": dict(NEXUS, variant="nexus_dot"),
        "random": dict(NEXUS, variant="random", max_grad_norm=0.06),
    }

    def model(seed=0):
        torch.manual_seed(seed)
        return Llama(ARGS)

    def train(backend, module, opt, steps, rank, world, halves=1):
        metrics = []
        for step in steps:
            opt.set_lr_multiplier(MULTIPLIERS[step])
            for micro in range(K):
                per_inner = opt.consumes_each_inner_batch  # the trainer's weighting and sync (train/trainer.py)
                pieces = DATA[step, micro].chunk(world)[rank].chunk(halves)
                for half, tokens in enumerate(pieces):
                    with backend.autocast():
                        loss = lm_loss(module(tokens[:, :-1]), tokens[:, 1:])
                    backend.backward(loss / halves / (1 if per_inner else K),
                                     sync=half == halves - 1 and (per_inner or micro == K - 1))
                opt.micro_step()
            metrics.append({k: float(v) for k, v in opt.step().items()})
            opt.zero_grad()
        return metrics

    def reference(optim, halves=1):
        backend = SingleDevice(BackendConfig(name="single", device="cpu"))
        module, opt = backend.setup(model(), OptimConfig(**OPTIMS[optim]), seed=0)
        metrics = train(backend, module, opt, range(STEPS), 0, 1, halves)
        return backend.full_state_dict(module), metrics

    def rel_diff(got, want):
        # Largest relative L2 difference of one tensor: isolated Adam-amplified rounding outliers (e.g.
        # rows of rare tokens) weigh little; a wrong lr or weight decay moves every element.
        assert got.keys() == want.keys(), (sorted(got), sorted(want))
        return max(((got[k] - want[k]).norm() / want[k].norm().clamp_min(1e-12)).item() for k in want)

    def bitwise(got, want):
        return all(torch.equal(got[k], want[k]) for k in want)

    results, backends = {}, {}
    for stage, optim in cases:
        t0 = time.perf_counter()
        cfg = BackendConfig(name="deepspeed", device="cpu", zero_stage=int(str(stage)[0]))
        # Partition even the tiny parameters under ZeRO-3 (by default parameters under 1e5 elements stay
        # whole on every rank, "persistent"); stage "3p" keeps that default.
        over = {"zero_optimization": {"stage3_param_persistence_threshold": 0}} if stage == 3 else {}
        backend = DeepSpeedBackend(cfg, micro_batch=GLOBAL_MICRO // 2, config_overrides=over)
        rank, world = backend.rank, backend.world_size
        ocfg = OptimConfig(**OPTIMS[optim])
        engine, opt = backend.setup(model(), ocfg, seed=0)
        metrics = train(backend, engine, opt, range(STEPS), rank, world)
        full = backend.full_state_dict(engine)
        # Resume: two steps, save, a fresh engine on a differently initialized model loads and does step 3.
        ckpt = f"{ckpt_root}/z{stage}_{optim}"
        engine1, opt1 = backend.setup(model(), ocfg, seed=0)
        train(backend, engine1, opt1, range(2), rank, world)
        backend.save(ckpt, engine1, opt1)
        engine2, opt2 = backend.setup(model(seed=7), ocfg, seed=0)
        backend.load(ckpt, engine2, opt2)
        train(backend, engine2, opt2, range(2, STEPS), rank, world)
        resumed = backend.full_state_dict(engine2)
        if rank == 0:
            res = {"resume_bitwise": bitwise(resumed, full), "seconds": time.perf_counter() - t0, "metrics": metrics}
            if optim != "random":  # random draws its directions per partition: no single-device twin
                ref, ref_metrics = reference(optim)
                res.update(rel_diff=rel_diff(full, ref), ref_metrics=ref_metrics,
                           fp32_floor=rel_diff(reference(optim, halves=2)[0], ref))
            results[f"z{stage}_{optim}"] = res
    if backend.rank == 0:
        with open(out_path, "w") as f:
            json.dump(results, f)
    backend.close()
    """
)

CASES = [[stage, optim] for stage in (1, 2, 3) for optim in ("adamw", "nexus")] + [
    ["3p", "nexus"], [2, "nsgd"], [3, "nexus_dot"], [2, "random"]]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ds_config_from_our_config():
    adamw = OptimConfig(name="adamw", max_grad_norm=0.7)
    nexus = OptimConfig(name="nexus", max_grad_norm=0.7)
    cfg = ds_config(BackendConfig(name="deepspeed", zero_stage=2), adamw, micro_batch=4)
    assert cfg["train_micro_batch_size_per_gpu"] == 4 and cfg["gradient_accumulation_steps"] == 1
    assert cfg["zero_optimization"]["stage"] == 2 and "offload_optimizer" not in cfg["zero_optimization"]
    assert cfg["gradient_clipping"] == 0.7 and cfg["bf16"] == {"enabled": False}
    assert cfg["zero_allow_untested_optimizer"] and not cfg["wall_clock_breakdown"]
    assert cfg["steps_per_print"] > 10**12 and cfg["communication_data_type"] == "fp32"
    # Nexus clips its pseudo-gradient itself; the inner steps need the raw gradients.
    z3 = ds_config(BackendConfig(name="deepspeed", zero_stage=3, cpu_offload=True), nexus, bf16=True,
                   overrides={"zero_optimization": {"stage3_param_persistence_threshold": 0}})
    assert z3["gradient_clipping"] == 0.0 and z3["bf16"] == {"enabled": True}
    assert z3["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert z3["zero_optimization"]["stage3_param_persistence_threshold"] == 0
    assert z3["zero_optimization"]["stage"] == 3 and z3["zero_optimization"]["sub_group_size"] >= 10**12
    json.dumps(z3)
    with pytest.raises(ValueError, match="zero_stage"):
        ds_config(BackendConfig(name="deepspeed", zero_stage=4), adamw)
    with pytest.raises(ValueError, match="Muon"):
        check_supported(OptimConfig(name="nexus", outer="muon"))
    with pytest.raises(ValueError, match="Muon"):
        check_supported(OptimConfig(name="muon"))


@pytest.mark.skipif(not HAS_DEEPSPEED, reason="deepspeed is not installed (DS_BUILD_OPS=0 pip install deepspeed==0.19.8)")
def run_two_ranks(script: Path, args: list) -> tuple:
    """Both ranks of the worker on a fresh port: (return codes, their output without warning lines)."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2",
               OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu")
    procs = [subprocess.Popen([sys.executable, str(script), *args],
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r), LOCAL_WORLD_SIZE="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    output = "\n".join(line for log in logs for line in log.splitlines()
                       if "Warning" not in line and "return func(" not in line)
    return [p.returncode for p in procs], output


def test_zero_stages_match_single_device_and_resume_exactly(tmp_path):
    script, out = tmp_path / "worker.py", tmp_path / "result.json"
    script.write_text(WORKER)
    args = [str(out), str(tmp_path / "ckpt"), json.dumps(CASES)]
    codes, output = run_two_ranks(script, args)
    if any(codes) and "address already in use" in output.lower():  # the free port was taken meanwhile
        shutil.rmtree(tmp_path / "ckpt", ignore_errors=True)
        codes, output = run_two_ranks(script, args)
    assert not any(codes), output[-6000:]
    results = json.loads(out.read_text())
    for case, res in results.items():  # shown with pytest -s
        print(case, {k: res[k] for k in ("rel_diff", "fp32_floor", "resume_bitwise", "seconds") if k in res})
    assert sorted(results) == sorted(f"z{s}_{o}" for s, o in CASES)
    for case, res in results.items():
        assert res["resume_bitwise"], case
        if "rel_diff" not in res:
            continue
        # Parameters: within 1e-5 relative, or within 3x the fp32 floor of the reference itself (Nexus).
        assert res["rel_diff"] < max(1e-5, 3 * res["fp32_floor"]), (case, res["rel_diff"], res["fp32_floor"])
        assert res["fp32_floor"] < 1e-3, case
        # Step metrics (gradient / pseudo-gradient / mean inner gradient norms) match tightly.
        for got, want in zip(res["metrics"], res["ref_metrics"]):
            assert got.keys() == want.keys(), case
            for name in want:
                assert abs(got[name] - want[name]) <= 1e-5 * abs(want[name]), (case, name, got, want)
    # Clipping was active in the first step (so the clipped paths are what matched).
    assert results["z1_adamw"]["ref_metrics"][0]["grad_norm"] > 0.5
    assert results["z1_nexus"]["ref_metrics"][0]["grad_norm"] > 0.06
    assert results["z2_nsgd"]["ref_metrics"][0]["grad_norm"] > 0.03
