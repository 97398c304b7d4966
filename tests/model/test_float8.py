"""FP8 training (model.float8): the config switch, which layers convert, the FP8 arithmetic (emulated on
CPU: operands rounded to FP8 exactly as on the GPU, multiplied in fp32), the trainer and nexus-bench with
it. GPU-only checks (real FP8 matmuls, compiled) are marked gpu and skip elsewhere."""

import json

import pytest
import torch
from torch import nn

from nexus_pretrain.cli import check_overrides
from nexus_pretrain.config import ModelConfig
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.model import float8
from nexus_pretrain.model.llama import Llama, QKVProjection
from nexus_pretrain.model.presets import resolve_model_args

BLOCK_LINEARS = ("attention.wqkv", "attention.wo", "feed_forward.w13", "feed_forward.w2")
E4M3_MAX = torch.finfo(torch.float8_e4m3fn).max


def meta_model(preset: str, **overrides) -> Llama:
    with torch.device("meta"):
        return Llama(resolve_model_args(ModelConfig(preset=preset, **overrides), 32000, 2048))


def block_names(n_layers: int, layers=BLOCK_LINEARS) -> list:
    return [f"layers.{i}.{name}" for i in range(n_layers) for name in layers]


def fp8_round(t: torch.Tensor) -> torch.Tensor:
    """t rounded to FP8 e4m3 with one dynamic scale (max |t| maps to the format's largest value)."""
    scale = (E4M3_MAX / t.abs().max().double()).float()
    return (t * scale).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).float() / scale


# ------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("value, normalized", [("true", "true"), ("True", "true"), ("auto", "auto"),
                                               ("false", "false")])
def test_float8_values_are_accepted(value, normalized):
    check_overrides([f"model.float8={value}", "model.float8_recipe=rowwise", "model.float8_min_dim=0"])
    assert float8.float8_mode(value) == normalized


@pytest.mark.parametrize("overrides, message", [
    (["model.float8=yes"], "model.float8='yes' is not one of false, true, auto"),
    (["model.float8_recipe=blockwise"], "model.float8_recipe=blockwise is not one of tensorwise, rowwise"),
    (["model.float8_min_dim=-1"], "model.float8_min_dim=-1 must be >= 0"),
    (["model.float8_cache_weights=always"], "model.float8_cache_weights='always' is not one of false, true, auto"),
    (["model.float8=true", "backend=deepspeed"], "model.float8=true with backend.name=deepspeed is not supported"),
])
def test_bad_float8_settings_fail_with_one_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        check_overrides(overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_auto_with_deepspeed_is_accepted_and_leaves_cpu_runs_untouched():
    check_overrides(["model.float8=auto", "backend=deepspeed"])  # DeepSpeed never converts: auto stays bf16
    model = Llama(resolve_model_args(ModelConfig(preset="tiny", float8="auto", float8_min_dim=0), 256, 32))
    assert float8.apply_float8(model, torch.device("cpu")) == []
    assert all(type(m) in (nn.Linear, QKVProjection) for m in model.modules() if isinstance(m, nn.Linear))
    assert not float8.wants_float8("false", torch.device("cpu"))


# ---------------------------------------------------------------------------------- layer selection
def test_large_presets_convert_every_block_linear_and_the_head_only_when_asked():
    for preset, n_layers in (("llama_1b", 24), ("llama_3b", 34)):
        model = meta_model(preset)
        chosen = [name for name, m in model.named_modules() if float8.converts(m, name, float8.DEFAULT_MIN_DIM)]
        assert chosen == block_names(n_layers)
        assert float8.converts(model.output, "output", 0) is False


def test_small_layers_stay_bf16():
    for preset in ("llama_130m", "llama_520m"):  # every layer has a side of 768 or 1280: below the default
        model = meta_model(preset)
        assert not [name for name, m in model.named_modules() if float8.converts(m, name, float8.DEFAULT_MIN_DIM)]
    # Both sides count: 520M's 1280 -> 3840 q/k/v and 1280 -> 6912 gate/up convert from 1280, not from 1281.
    chosen = [name for name, m in meta_model("llama_520m").named_modules() if float8.converts(m, name, 1280)]
    assert chosen == block_names(26)
    assert not [name for name, m in meta_model("llama_520m").named_modules() if float8.converts(m, name, 1281)]
    assert not float8.converts(nn.Linear(4096, 1000), "x", 0)  # 1000 is not a multiple of 16


def test_conversion_swaps_the_chosen_modules_and_keeps_the_weights():
    pytest.importorskip("torchao")
    from torchao.float8.float8_linear import Float8Linear

    model = Llama(resolve_model_args(ModelConfig(preset="tiny"), 256, 32))
    weights = {name: p for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    chosen = float8.convert(model, "tensorwise", min_dim=0, emulate=True, head=False)
    assert chosen == block_names(4) == float8.float8_layers(model)
    assert all(isinstance(model.get_submodule(name), Float8Linear) for name in chosen)
    assert type(model.output) is nn.Linear
    assert model.layers[0].attention.wqkv.sizes == [128, 64, 64]
    # The same Parameter objects (an optimizer built before or after sees the same tensors), same checkpoint keys.
    assert all(p is weights[name] for name, p in model.named_parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_head_matmul_converts_by_default_and_keeps_its_plain_weight():
    pytest.importorskip("torchao")
    assert float8.converts(meta_model("llama_1b").output, "output", float8.DEFAULT_MIN_DIM, head=True)
    assert not float8.converts(meta_model("llama_520m").output, "output", float8.DEFAULT_MIN_DIM, head=True)
    model = Llama(resolve_model_args(ModelConfig(preset="tiny"), 256, 32))
    weight = model.output.weight
    assert float8.convert(model, "tensorwise", min_dim=0, emulate=True) == block_names(4) + ["output"]  # default
    assert float8.float8_layers(model) == block_names(4) + ["output"]
    assert type(model.output) is nn.Linear and model.output.weight is weight  # same checkpoint, same parameter
    x = torch.randn(8, 128)
    expected = fp8_round(x) @ fp8_round(weight.detach()).t()
    assert torch.allclose(model.head_linear(x, weight), expected, rtol=1e-5, atol=1e-6)
    tokens = torch.randint(0, 256, (2, 17))
    model(tokens[:, :-1], tokens[:, 1:]).mean().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    assert model(tokens[:, :-1]).shape == (2, 16, 256)  # logits (evaluation) go through the FP8 head too


def test_fast_accumulation_reaches_the_backward_matmuls_only_when_asked():
    pytest.importorskip("torchao")
    default, fast = float8.float8_config("tensorwise"), float8.float8_config("tensorwise", fast_accum=True)
    assert float8.DEFAULT_FAST_ACCUM  # model.float8_fast_accum=null: convert passes fast_accum=True
    assert default.gemm_config_output.use_fast_accum and fast.gemm_config_output.use_fast_accum
    assert not default.gemm_config_grad_input.use_fast_accum and not default.gemm_config_grad_weight.use_fast_accum
    assert fast.gemm_config_grad_input.use_fast_accum and fast.gemm_config_grad_weight.use_fast_accum
    model = Llama(resolve_model_args(ModelConfig(preset="tiny", float8="true", float8_min_dim=0,
                                                 float8_fast_accum=False, float8_head=False), 256, 32))
    assert float8.apply_float8(model, torch.device("cpu")) == block_names(4)
    assert not model.layers[0].feed_forward.w13.config.gemm_config_grad_weight.use_fast_accum
    model = Llama(resolve_model_args(ModelConfig(preset="tiny", float8="true", float8_min_dim=0), 256, 32))
    assert float8.apply_float8(model, torch.device("cpu")) == block_names(4) + ["output"]  # the defaults
    assert model.layers[0].feed_forward.w13.config.gemm_config_grad_weight.use_fast_accum


# ------------------------------------------------------------------------------------- arithmetic
def test_fp8_linear_rounds_operands_to_fp8():
    pytest.importorskip("torchao")
    holder = nn.Sequential(nn.Linear(64, 48, bias=False))
    weight = holder[0].weight.detach().clone()
    float8.convert(holder, "tensorwise", min_dim=0, emulate=True)
    x = torch.randn(8, 64)
    out = holder(x)
    expected = fp8_round(x) @ fp8_round(weight).t()
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert (out - x @ weight.t()).norm() / expected.norm() > 0.005  # FP8 rounding did happen


def test_fp8_qkv_projection_is_one_fp8_matmul_split_into_q_k_v():
    pytest.importorskip("torchao")
    holder = nn.Sequential(QKVProjection(64, [64, 32, 32]))
    weight = holder[0].weight.detach().clone()
    float8.convert(holder, "tensorwise", min_dim=0, emulate=True)
    x = torch.randn(2, 5, 64, requires_grad=True)
    q, k, v = holder[0](x)
    expected = (fp8_round(x) @ fp8_round(weight).t()).split([64, 32, 32], dim=-1)
    for got, want in zip((q, k, v), expected):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    (q.sum() + 2 * k.sum() + 3 * v.sum()).backward()
    assert holder[0].weight.grad.shape == (128, 64) and x.grad.shape == x.shape


# ---------------------------------------------------------------------------- trainer and bench
SMALL = ["model.dim=64", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=128",
         "data.seq_len=32", "data.eval_sequences=4", "trainer.global_batch=8", "trainer.micro_batch=4",
         "schedule.warmup_steps=1", "schedule.decay_steps=2", "trainer.max_steps=4", "trainer.log_every=1",
         "trainer.eval_every=0", "trainer.checkpoint_every=0", "trainer.export_hf=false",
         "logging.progress_bar=false"]


def train_losses(tmp_path, *overrides):
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.train.trainer import Trainer

    trainer = Trainer(compose_config([*SMALL, f"trainer.run_dir={tmp_path}", *overrides]))
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return trainer, [r["loss"] for r in records if "loss" in r]


def test_trainer_with_nexus_trains_fp8_linears_on_fp32_master_weights(tmp_path):
    pytest.importorskip("torchao")
    from torchao.float8.float8_linear import Float8Linear

    _, reference = train_losses(tmp_path / "fp32", "optim=nexus")
    trainer, losses = train_losses(tmp_path / "fp8", "optim=nexus", "model.float8=true", "model.float8_min_dim=0",
                                   "model.float8_head=true", "model.float8_fast_accum=true",
                                   "trainer.activation_checkpointing=true")
    assert sum(isinstance(m, Float8Linear) for m in trainer.model.modules()) == 8 and trainer.model.head_linear.float8
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert len(losses) == len(reference) == 4
    for fp8, exact in zip(losses, reference):  # same seed and batches: FP8 rounding moves the loss by < 1%
        assert abs(fp8 - exact) < 0.01 * exact


def test_recorded_mode_resolves_auto_to_what_it_did():
    assert float8.recorded_mode("auto", ["layers.0.feed_forward.w2"]) == "true"
    assert float8.recorded_mode("auto", []) == "false"
    assert float8.recorded_mode(True, []) == "true" and float8.recorded_mode("false", []) == "false"


def test_run_records_auto_as_what_it_did_and_refuses_a_resume_where_auto_means_otherwise(tmp_path):
    """auto trains in FP8 on one GPU and in bf16 on another: the run says which, and does not switch."""
    pytest.importorskip("torchao")
    from omegaconf import OmegaConf

    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.errors import RunError
    from nexus_pretrain.train.trainer import Trainer

    train_losses(tmp_path / "auto", "model.float8=auto")  # CPU: auto stays bf16
    assert OmegaConf.load(tmp_path / "auto" / "config.yaml").model.float8 == "false"
    run = tmp_path / "fp8"
    train_losses(run, "model.float8=true", "model.float8_min_dim=0", "trainer.checkpoint_every=2")
    assert OmegaConf.load(run / "config.yaml").model.float8 == "true"
    # The same run resumed under auto where auto means bf16 (here: CPU) is another run.
    resumed = Trainer(compose_config([*SMALL, f"trainer.run_dir={run}", "model.float8=auto", "model.float8_min_dim=0",
                                      "trainer.checkpoint_every=2", "trainer.resume=auto"]))
    with pytest.raises(RunError, match=r"model\.float8: true -> false; .*allow_config_change=\[model\.float8\]"):
        resumed.fit()


def test_bench_float8_adds_the_fp8_model_and_its_ratio(capsys):
    pytest.importorskip("torchao")
    from nexus_pretrain.bench import main

    results = main(["--preset", "tiny", "--vocab", "256", "--seq-len", "32", "--micro-batch", "2", "--accum", "1",
                    "--steps", "1", "--warmup", "1", "--device", "cpu", "--optimizers", "adamw", "--float8",
                    "--float8-min-dim", "0", "--in-process"])
    assert list(results) == ["ours", "ours_fp8"]
    assert results["ours"]["adamw"]["float8_layers"] == 0 and results["ours_fp8"]["adamw"]["float8_layers"] == 17
    assert "tok/s vs bf16" in capsys.readouterr().out and float8.CAST_ONCE


# -------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="needs a GPU with FP8 (compute capability 8.9+)")
@pytest.mark.parametrize("recipe, fast_accum, head", [("tensorwise", False, False), ("rowwise", False, False),
                                                      ("tensorwise", True, True)])
def test_compiled_fp8_model_on_gpu_matches_bf16(recipe, fast_accum, head):
    pytest.importorskip("torchao")
    from nexus_pretrain.model.llama import compile_regions

    device = torch.device("cuda")
    args = resolve_model_args(ModelConfig(preset="tiny", dim=256, ffn_dim=768, float8="auto", float8_recipe=recipe,
                                          float8_min_dim=0, float8_fast_accum=fast_accum, float8_head=head), 256, 128)
    torch.manual_seed(0)
    with device:
        fp8, bf16 = Llama(args), Llama(args)
    bf16.load_state_dict(fp8.state_dict())
    converted = block_names(4) + (["output"] if head else [])
    assert float8.apply_float8(fp8, device) == converted  # auto converts on an FP8 GPU
    for model in (fp8, bf16):
        compile_regions(model)
    tokens = torch.randint(0, 256, (8, 129), device=device)
    losses = []
    for model in (fp8, bf16):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(tokens[:, :-1], tokens[:, 1:]).mean()
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 0.01 * losses[1]
    g8, g = fp8.layers[0].feed_forward.w13.weight.grad, bf16.layers[0].feed_forward.w13.weight.grad
    assert (g8 - g).norm() / g.norm() < 0.2


# ------------------------------------------------------------------------------------------ FSDP2
FSDP2_WORKER = """
import json, sys
import torch.distributed as dist
from torchao.float8.fsdp_utils import WeightWithDynamicFloat8CastTensor
from nexus_pretrain.demo import compose_config
from nexus_pretrain.train.trainer import Trainer

trainer = Trainer(compose_config(json.loads(sys.argv[1])))
weight = trainer.model.layers[0].feed_forward.w13.weight
assert isinstance(weight._local_tensor, WeightWithDynamicFloat8CastTensor), type(weight._local_tensor)
trainer.fit()
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_fsdp2_gathers_fp8_weights_and_trains_like_one_device(tmp_path):
    """Two CPU ranks (gloo), Nexus, FP8 weight all-gather and a checkpoint: the same losses as one device
    (the amax of the sharded weight is all-reduced, so the FP8 scales are the same)."""
    pytest.importorskip("torchao")
    import os
    import socket
    import subprocess
    import sys

    overrides = ["optim=nexus", "model.float8=true", "model.float8_min_dim=0", "trainer.checkpoint_every=2",
                 "trainer.micro_batch=2", "backend.device=cpu"]
    _, single = train_losses(tmp_path / "single", *overrides)
    worker = tmp_path / "worker.py"
    worker.write_text(FSDP2_WORKER)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "fsdp2"
    config = [*SMALL, f"trainer.run_dir={run_dir}", *overrides, "backend=fsdp2", "backend.device=cpu"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                           str(worker), json.dumps(config)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    sharded = [r["loss"] for r in records if "loss" in r]
    assert sharded == pytest.approx(single, rel=5e-3)
