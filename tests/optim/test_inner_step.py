"""How far a Nexus inner step moves the weights, and the start-up warning when FP8 forwards cannot see it."""

import math
import warnings

import pytest
import torch

from nexus_pretrain.config import OptimConfig
from nexus_pretrain.optim.inner_step import step_ratio, weight_scale
from nexus_pretrain.optim.traits import optimizer_traits
from nexus_pretrain.train.preflight import FP8_VISIBLE_STEP_RATIO, PreflightWarning, warn_if_fp8_hides_inner_steps


def test_only_the_nexus_variant_takes_inner_steps_of_a_fixed_length():
    assert optimizer_traits(OptimConfig(name="nexus", inner_lr=0.03)).inner_step_length == 0.03
    for cfg in (OptimConfig(name="adamw"), OptimConfig(name="muon"), OptimConfig(name="nexus", variant="nexus_dot"),
                OptimConfig(name="nexus", variant="parallel"), OptimConfig(name="nexus", variant="random"),
                OptimConfig(name="nexus", variant="nsgd")):
        assert optimizer_traits(cfg).inner_step_length is None, cfg


def test_step_ratio_is_the_step_per_weight_over_the_matrices_rms():
    tensors = [torch.full((2, 3), 3.0), torch.full((2,), 100.0)]  # the vector counts in n, not in the rms
    n, rms = weight_scale(tensors)
    assert n == 8 and rms == pytest.approx(3.0, rel=1e-6)  # an fp32 norm
    assert step_ratio(0.06, n, rms) == pytest.approx(0.06 / (math.sqrt(8) * 3.0))
    assert weight_scale([torch.tensor([[3.0, -4.0]])]) == (2, pytest.approx(math.sqrt(12.5)))


def _warnings(ratio, layers):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_fp8_hides_inner_steps(ratio, layers, inner_lr=0.01)
    return [w for w in caught if issubclass(w.category, PreflightWarning)]


def test_warning_only_for_fp8_layers_and_steps_below_the_threshold():
    (warning,) = _warnings(1.5e-5, ["layers.0.attention.wqkv", "output"])
    text = str(warning.message)
    assert "optim.inner_lr=0.01" in text and "1.5e-05" in text and "2 layers compute in FP8" in text
    assert "optim.variant=parallel" in text and "model.float8=false" in text
    assert _warnings(1.5e-5, []) == []  # bf16: no FP8 layer
    assert _warnings(FP8_VISIBLE_STEP_RATIO, ["x"]) == []
    assert _warnings(None, ["x"]) == []  # AdamW, controls: no inner step


SMALL = ["model.dim=64", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=128",
         "data.seq_len=32", "data.eval_sequences=4", "trainer.global_batch=8", "trainer.micro_batch=4",
         "trainer.max_steps=1", "trainer.eval_every=0", "trainer.checkpoint_every=0", "logging.progress_bar=false"]


@pytest.mark.parametrize("overrides, warned", [
    (["model.float8=true", "model.float8_min_dim=0"], True),
    (["model.float8=true", "model.float8_min_dim=0", "optim.variant=parallel"], False),
    (["model.float8=true", "model.float8_min_dim=0", "optim.inner_lr=1.0"], False),  # a step FP8 sees
    ([], False),  # bf16
])
def test_trainer_warns_at_start_when_fp8_hides_nexus_inner_steps(tmp_path, overrides, warned):
    pytest.importorskip("torchao")
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.train.trainer import Trainer

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(compose_config([*SMALL, f"trainer.run_dir={tmp_path}", "optim=nexus", *overrides]))
    assert any("alignment term" in str(w.message) for w in caught) == warned
