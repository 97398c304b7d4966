"""Mixture presets (fixed shares, Math10/40/70) and the Chinchilla helper."""

import numpy as np
import pytest

from nexus_pretrain.cli import check_overrides, data as data_cli
from nexus_pretrain.data.chinchilla import chinchilla_tokens, steps_for
from nexus_pretrain.data.mixture import apply_fixed_shares
from nexus_pretrain.data.sampler import MixtureSampler
from nexus_pretrain.demo import compose_config
from nexus_pretrain.errors import ConfigError


def test_fixed_share_scales_the_other_domains_proportionally():
    got = apply_fixed_shares({"web": 1.0, "math": 5.0, "code": 3.0}, {"math": 0.1})
    assert got == pytest.approx({"web": 0.9 * 1 / 4, "math": 0.1, "code": 0.9 * 3 / 4})
    assert sum(got.values()) == pytest.approx(1.0)
    assert apply_fixed_shares({"a": 2.0, "b": 0.0, "c": 2.0}, {"b": 0.3, "c": 0.2}) == pytest.approx(
        {"a": 0.5, "b": 0.3, "c": 0.2})


@pytest.mark.parametrize("shares, message", [
    ({"poetry": 0.1}, r"data.fixed_shares.poetry: not in data.domains"),
    ({"math": -0.1}, r"data.fixed_shares.math=-0.1 must be >= 0"),
    ({"math": 0.6, "web": 0.4}, r"data.fixed_shares sum to 1; they must sum to less than 1"),
])
def test_bad_fixed_shares(shares, message):
    with pytest.raises(ValueError, match=message):
        apply_fixed_shares({"web": 1.0, "math": 1.0, "code": 1.0}, shares)
    with pytest.raises(ValueError, match="no other domain"):
        apply_fixed_shares({"math": 1.0, "web": 0.0}, {"math": 0.5})


@pytest.mark.parametrize("preset, share", [("math10", 0.1), ("math40", 0.4), ("math70", 0.7)])
def test_math_presets_are_realized_by_the_sampler(preset, share):
    cfg = compose_config([f"data={preset}"])
    assert cfg.data.fixed_shares == {"math": share} and cfg.data.name == preset
    check_overrides([f"data={preset}", "trainer.max_steps=300"])
    weights = apply_fixed_shares(cfg.data.domains, cfg.data.fixed_shares)
    streams = {d: np.zeros(1000, dtype=np.uint16) for d in weights}
    sampler = MixtureSampler(streams, weights, seq_len=8, seed=0)
    drawn = np.concatenate([sampler.step_plan(step, 512, 1)[0] for step in range(40)])  # 20480 sequences
    realized = {d: float(np.mean(drawn == i)) for i, d in enumerate(sampler.domains)}
    others = (1 - share) / 2  # web and code have equal weights in the presets
    assert realized == pytest.approx({"web": others, "math": share, "code": others}, abs=0.015)


def test_config_validation_of_fixed_shares_and_shards():
    with pytest.raises(ConfigError, match="data.fixed_shares sum to 1.2"):
        check_overrides(["data=math10", "data.fixed_shares.math=1.2"])
    with pytest.raises(ConfigError, match="data.path is not set"):
        check_overrides(["data=shards"])
    with pytest.raises(ConfigError, match="data.path=/somewhere: no such folder"):
        check_overrides(["data=shards", "data.path=/somewhere"])


def test_chinchilla_numbers_by_hand(capsys):
    # llama_1b: dim 2048, 24 layers, 16 heads (no GQA), ffn 5504.
    per_layer = 4 * 2048 * 2048 + 3 * 2048 * 5504 + 2 * 2048
    params = 24 * per_layer + 2048
    assert params == 1_214_351_360
    assert chinchilla_tokens("llama_1b", 4) == 20 * params * 4 == 97_148_108_800
    assert steps_for(97_148_108_800, 256, 2048) == 185_296  # ceil(97148108800 / 524288 = 185295.31)
    assert steps_for(524_288, 256, 2048) == 1 and steps_for(524_289, 256, 2048) == 2
    # llama_3b uses GQA: 20 query heads, 4 kv heads of 128 dims.
    attn = 2560 * (20 + 2 * 4) * 128 + 20 * 128 * 2560
    assert chinchilla_tokens("llama_3b", 2) == 20 * 2 * (34 * (attn + 3 * 2560 * 6912 + 2 * 2560) + 2560)
    data_cli(["chinchilla", "--preset", "llama_1b", "--multiplier", "4", "--global-batch", "256", "--seq-len", "2048"])
    assert "tokens=97148108800 steps=185296" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--preset 'llama_7b' is not one of"):
        chinchilla_tokens("llama_7b", 1)
