"""WSD, cosine and constant multipliers against hand-computed values."""

import math
from types import SimpleNamespace

import pytest

from nexus_pretrain.optim.schedule import cosine, lr_multiplier, wsd


def test_wsd_hand_computed():
    # 10 steps: warmup 2 (0.5, 1.0), stable until step 6, decay over the last 4 to 0 at step 9.
    values = [wsd(s, max_steps=10, warmup_steps=2, decay_steps=4) for s in range(10)]
    assert values == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_wsd_shapes_and_floor():
    assert wsd(6, 10, 2, 4, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert wsd(6, 10, 2, 4, "sqrt") == pytest.approx(1 - math.sqrt(0.25))
    assert wsd(9, 10, 2, 4, "linear", min_lr_ratio=0.1) == pytest.approx(0.1)
    assert wsd(7, 10, 2, 4, "linear", min_lr_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    with pytest.raises(ValueError, match="decay_shape"):
        wsd(7, 10, 2, 4, "exp")


def test_cosine_hand_computed():
    # warmup 2, then 8 steps of half cosine: progress = (s - 1) / 8.
    assert cosine(0, 10, 2) == pytest.approx(0.5)
    assert cosine(1, 10, 2) == pytest.approx(1.0)
    assert cosine(5, 10, 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))  # 0.5
    assert cosine(9, 10, 2, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_lr_multiplier_dispatches_on_config():
    cfg = SimpleNamespace(name="constant", warmup_steps=4, decay_steps=0, decay_shape="linear", min_lr_ratio=0.0)
    assert [lr_multiplier(cfg, s, 10) for s in (0, 3, 9)] == pytest.approx([0.25, 1.0, 1.0])
    cfg.name = "wsd"
    assert lr_multiplier(cfg, 9, 10) == pytest.approx(1.0)
