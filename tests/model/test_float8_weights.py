"""model.float8_cache_weights: each FP8 layer's weight cast once per change of the weight, not once per
forward, with the same numbers; recast after an optimizer step, a Nexus inner step or a checkpoint load.
CPU, FP8 emulated (see test_float8.py)."""

import pytest
import torch

from nexus_pretrain.config import ModelConfig
from nexus_pretrain.model import float8
from nexus_pretrain.model.llama import Llama, compile_regions
from nexus_pretrain.model.presets import resolve_model_args

from .test_float8 import train_losses

pytest.importorskip("torchao")


def _model(cache: bool, compile: bool = False, checkpointing: bool = False, float8_eval: str = "fp8") -> Llama:
    torch.manual_seed(0)
    model = Llama(resolve_model_args(ModelConfig(preset="tiny", float8="true", float8_min_dim=0,
                                                 float8_cache_weights=cache, float8_eval=float8_eval), 256, 32))
    float8.apply_float8(model, torch.device("cpu"), compile=compile)
    model.activation_checkpointing = checkpointing
    if compile:
        compile_regions(model)
    return model


def _train(model: Llama, steps: int = 3, accum: int = 2) -> list:
    """AdamW steps of ``accum`` micro-batches each, each step followed by an evaluation forward; the
    losses of every micro-batch and evaluation."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        for _ in range(accum):
            batch = torch.randint(0, 256, (2, 33), generator=gen)
            loss = model(batch[:, :-1], batch[:, 1:]).mean()
            (loss / accum).backward()
            losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad()
        with float8.evaluation_forward(model), torch.no_grad():
            losses.append(model(batch[:, :-1], batch[:, 1:]).mean().item())
    return losses


@pytest.mark.parametrize("compile,checkpointing", [(False, False), (False, True), (True, False), (True, True)])
def test_kept_weights_train_exactly_as_casting_in_each_forward_with_one_cast_per_step(compile, checkpointing):
    torch._dynamo.reset()
    reference = _train(_model(False, compile, checkpointing))
    torch._dynamo.reset()
    model = _model(True, compile, checkpointing)
    assert _train(model) == reference
    layers = len(model.float8_weight_cache.layers)
    assert layers == len(float8.float8_layers(model)) - 1  # every converted block layer; the head casts its own
    # one per weight change (the initial weights, then each step's), not one per micro-batch or evaluation
    assert model.float8_weight_cache.casts == 4 * layers


def test_kept_weights_wait_out_bf16_evaluations():
    """model.float8_eval=bf16: the evaluation after each step casts nothing; the next training forward does
    (so the last step's weights are never cast)."""
    reference = _train(_model(False, float8_eval="bf16"))
    model = _model(True, float8_eval="bf16")
    assert _train(model) == reference
    assert model.float8_weight_cache.casts == 3 * len(model.float8_weight_cache.layers)


def test_kept_weights_compile_once():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model(True, compile=True)
    _train(model, steps=1)
    graphs = counters["stats"]["unique_graphs"]
    _train(model, steps=3)
    assert counters["stats"]["unique_graphs"] == graphs  # new FP8 weights each step, no recompilation


def test_a_loaded_checkpoint_is_cast_again():
    trained, fresh = _model(False), _model(True)
    _train(trained, steps=1)
    tokens = torch.randint(0, 256, (2, 32))
    with torch.no_grad():
        fresh(tokens)  # keeps the FP8 cast of its initial weights
        fresh.load_state_dict(trained.state_dict())
        assert torch.equal(fresh(tokens), trained(tokens))


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_nexus_trains_the_same_with_kept_weights(tmp_path, inner_steps):
    """An inner step after every other micro-batch (the kept weights serve two forwards) or after each
    (the weights change before every forward)."""
    args = ["optim=nexus", f"optim.inner_steps={inner_steps}", "model.float8=true", "model.float8_min_dim=0"]
    _, reference = train_losses(tmp_path / "cast", *args)
    trainer, losses = train_losses(tmp_path / "kept", *args, "model.float8_cache_weights=true")
    assert losses == reference and trainer.model.float8_weight_cache.casts > 0


def test_bench_measures_kept_weights(capsys, monkeypatch):
    from nexus_pretrain.bench import main
    from nexus_pretrain.model import float8_weights

    caches = []
    keep = float8_weights.keep_weights
    monkeypatch.setattr(float8_weights, "keep_weights", lambda *a: caches.append(keep(*a)) or caches[-1])
    main(["--preset", "tiny", "--vocab", "256", "--seq-len", "32", "--micro-batch", "2", "--accum", "2", "--steps", "1",
          "--warmup", "1", "--device", "cpu", "--optimizers", "adamw", "--models", "ours_fp8", "--float8-min-dim", "0",
          "--in-process", "--float8-cache-weights"])
    assert "float8_cache_weights=true" in capsys.readouterr().out
    # 16 block layers, each cast once for the warm-up step and once for the timed step of two micro-batches
    assert [cache.casts for cache in caches] == [2 * 16]


@pytest.mark.parametrize("override,names", [("backend.name=fsdp2", "backend.name=fsdp2"),
                                            ("model.float8_recipe=rowwise", "model.float8_recipe=rowwise")])
def test_kept_weights_are_refused_where_they_cannot_serve(override, names):
    from nexus_pretrain.config_checks import validate
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.errors import ConfigError

    cfg = compose_config(["model.float8=true", "model.float8_cache_weights=true", override])
    with pytest.raises(ConfigError, match=f"model.float8_cache_weights=true with {names}"):
        validate(cfg, world_size=2)


@pytest.mark.parametrize("mode,recipe,sharded,keeps", [
    ("auto", "tensorwise", False, True), ("auto", "tensorwise", True, False), ("auto", "rowwise", False, False),
    ("true", "tensorwise", False, True), ("false", "tensorwise", False, False), (True, "tensorwise", False, True)])
def test_auto_keeps_weights_only_where_they_can_serve(mode, recipe, sharded, keeps):
    assert float8.keeps_weights(mode, recipe, sharded) is keeps


def test_auto_is_accepted_with_fsdp2_and_rowwise_and_converts_unsharded_models():
    from nexus_pretrain.config_checks import validate
    from nexus_pretrain.demo import compose_config

    for override in ("backend.name=fsdp2", "model.float8_recipe=rowwise"):
        validate(compose_config(["model.float8=true", "model.float8_cache_weights=auto", override]), world_size=2)
    model = Llama(resolve_model_args(ModelConfig(preset="tiny", float8="true", float8_min_dim=0,
                                                 float8_cache_weights="auto"), 256, 32))
    float8.apply_float8(model, torch.device("cpu"))
    assert len(model.float8_weight_cache.layers) == len(float8.float8_layers(model)) - 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="needs a GPU with FP8 (compute capability 8.9+)")
def test_kept_weights_on_gpu_train_as_casting_in_each_forward():
    """Real FP8 matmuls, compiled, under autocast: two AdamW steps of two micro-batches, the same losses
    and weights to the last bit."""
    device = torch.device("cuda")
    results = []
    for cache in (False, True):
        torch._dynamo.reset()
        torch.manual_seed(0)
        args = resolve_model_args(ModelConfig(preset="tiny", dim=256, ffn_dim=768, float8="true", float8_min_dim=0,
                                              float8_cache_weights=cache), 256, 128)
        with device:
            model = Llama(args)
        float8.apply_float8(model, device, compile=True)
        compile_regions(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        gen = torch.Generator(device=device).manual_seed(1)
        losses = []
        for _ in range(2):
            for _ in range(2):
                tokens = torch.randint(0, 256, (8, 129), device=device, generator=gen)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(tokens[:, :-1], tokens[:, 1:]).mean()
                (loss / 2).backward()
                losses.append(loss.item())
            optimizer.step()
            optimizer.zero_grad()
        results.append((losses, model.layers[0].feed_forward.w13.weight.detach().clone()))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
