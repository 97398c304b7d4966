"""WSD, cosine and constant multipliers against hand-computed values; phase lengths as fractions or steps."""

import json
import math
from types import SimpleNamespace

import pytest

from nexus_pretrain.cli import check_overrides
from nexus_pretrain.config_checks import validate
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.optim.schedule import cosine, lr_multiplier, phase_steps, resolve_steps, wsd


def test_wsd_hand_computed():
    # 10 steps: warmup 2 (0.5, 1.0), stable until step 6, then the last 4 updates decay linearly towards 0,
    # which falls at step 10, one past the last update: 4/5, 3/5, 2/5, 1/5.
    values = [wsd(s, max_steps=10, warmup_steps=2, decay_steps=4) for s in range(11)]
    assert values == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0])


def test_wsd_shapes_and_floor():
    assert wsd(6, 10, 2, 4, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))
    assert wsd(6, 10, 2, 4, "sqrt") == pytest.approx(1 - math.sqrt(0.2))
    assert wsd(9, 10, 2, 4, "linear", min_lr_ratio=0.1) == pytest.approx(0.1 + 0.9 * 0.2)
    assert wsd(10, 10, 2, 4, "linear", min_lr_ratio=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="decay_shape"):
        wsd(7, 10, 2, 4, "exp")


def test_cosine_hand_computed():
    # warmup 2, then a half cosine over steps 2..10 reaching the floor at step 10: progress = (s - 1) / 9.
    assert cosine(0, 10, 2) == pytest.approx(0.5)
    assert cosine(1, 10, 2) == pytest.approx(1.0)
    assert cosine(5, 10, 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 9)))
    assert cosine(9, 10, 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * 8 / 9)))  # 0.0302, not 0
    assert cosine(10, 10, 2, min_lr_ratio=0.1) == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["wsd", "cosine"])
def test_no_update_is_spent_at_a_zero_floor(name):
    cfg = SimpleNamespace(name=name, warmup_steps=0.1, decay_steps=0.3, decay_shape="linear", min_lr_ratio=0.0)
    for max_steps in (2, 3, 20, 200, 95368):
        values = [lr_multiplier(cfg, s, max_steps) for s in range(max_steps)]
        assert min(values) > 0, (name, max_steps)


def test_lr_multiplier_dispatches_on_config():
    cfg = SimpleNamespace(name="constant", warmup_steps=4, decay_steps=0, decay_shape="linear", min_lr_ratio=0.0)
    assert [lr_multiplier(cfg, s, 10) for s in (0, 3, 9)] == pytest.approx([0.25, 1.0, 1.0])
    cfg.name = "wsd"
    assert lr_multiplier(cfg, 9, 10) == pytest.approx(1.0)


def test_phase_lengths_are_fractions_below_one_and_steps_above():
    assert resolve_steps(0.1, 20) == 2 and resolve_steps(0.3, 20) == 6 and resolve_steps(0.3, 200) == 60
    assert resolve_steps(0.05, 10) == 1 and resolve_steps(0.04, 10) == 0  # rounded half up
    assert resolve_steps(1000, 78661) == 1000 and resolve_steps(1.0, 5) == 1 and resolve_steps(0, 5) == 0
    with pytest.raises(ValueError, match=r"schedule.warmup_steps=2.5 is neither a fraction"):
        resolve_steps(2.5, 10, "schedule.warmup_steps")
    fractions = SimpleNamespace(name="wsd", warmup_steps=0.1, decay_steps=0.3, decay_shape="linear", min_lr_ratio=0)
    steps = SimpleNamespace(name="wsd", warmup_steps=2, decay_steps=6, decay_shape="linear", min_lr_ratio=0)
    assert phase_steps(fractions, 20) == phase_steps(steps, 20) == (2, 6)
    assert [lr_multiplier(fractions, s, 20) for s in range(20)] == [lr_multiplier(steps, s, 20) for s in range(20)]
    assert phase_steps(SimpleNamespace(name="cosine", warmup_steps=0.1, decay_steps=0.3), 20) == (2, 0)


def test_defaults_fit_any_run_length_and_a_real_conflict_is_one_line():
    from nexus_pretrain.experiments.files import compose_many

    fine = [[f"trainer.max_steps={steps}"] for steps in (1, 2, 20, 200)]
    fine += [["schedule=cosine", "trainer.max_steps=3"],
             ["trainer.max_steps=20", "schedule.warmup_steps=5", "schedule.decay_steps=0.5"]]  # mixed forms
    bad = [
        (["trainer.max_steps=20", "schedule.warmup_steps=10", "schedule.decay_steps=15"],
         "schedule.warmup_steps=10 (10 steps) + decay_steps=15 (15 steps) exceed trainer.max_steps=20; give them"),
        (["trainer.max_steps=20", "schedule.warmup_steps=0.5", "schedule.decay_steps=0.6"],
         "schedule.warmup_steps=0.5 (10 steps) + decay_steps=0.6 (12 steps) exceed trainer.max_steps=20"),
        (["schedule=cosine", "trainer.max_steps=20", "schedule.warmup_steps=30"],
         "schedule.warmup_steps=30 (30 steps) exceeds trainer.max_steps=20; give it as a fraction"),
        (["schedule.warmup_steps=2.5"], "schedule.warmup_steps=2.5 is neither a fraction < 1 of trainer.max_steps"),
        (["schedule.decay_steps=-1"], "schedule.decay_steps=-1.0 must be >= 0"),
    ]
    configs = compose_many([*fine, *(overrides for overrides, _ in bad)])  # one Hydra initialization
    for cfg in configs[:len(fine)]:
        validate(cfg)
    for cfg, (_, message) in zip(configs[len(fine):], bad):
        with pytest.raises(ConfigError) as info:
            validate(cfg)
        assert message in str(info.value) and "\n" not in str(info.value)
    check_overrides(["trainer.max_steps=20"])  # and through nexus-train's own check


def test_a_short_run_logs_the_schedule_and_a_nonzero_last_lr(tmp_path):
    from nexus_pretrain.demo import compose_config
    from nexus_pretrain.train.trainer import Trainer

    cfg = compose_config(["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1",
                          "model.ffn_dim=64", "data.seq_len=16", "data.eval_sequences=2", "trainer.global_batch=4",
                          "trainer.micro_batch=4", "trainer.max_steps=5", "trainer.log_every=1",
                          "trainer.eval_every=0", "trainer.checkpoint_every=0", "trainer.export_hf=false",
                          "logging.progress_bar=false", f"trainer.run_dir={tmp_path}"])
    Trainer(cfg).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if "lr" in r]
    # default wsd 0.1 / 0.3 of 5 steps: warmup 1 (0.5 rounded up), decay 2 (1.5) -> 1, 1, 1, 2/3, 1/3 of the peak
    assert lrs == pytest.approx([cfg.optim.lr * m for m in [1, 1, 1, 2 / 3, 1 / 3]])
