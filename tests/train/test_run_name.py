"""W&B runs are named and grouped by experiment, optimizer, mixture and seed; a sweep is one group."""

import sys
from types import SimpleNamespace

import yaml

from nexus_pretrain.config import LoggingConfig
from nexus_pretrain.rundir.run_name import run_identity
from nexus_pretrain.train.metrics import MetricsLogger


def _config(optim, data_name="math40", seed=1, domains=None):
    return {"model": {"preset": "tiny"}, "optim": optim, "trainer": {"seed": seed},
            "data": {"name": data_name, "domains": domains or {"web": 1.0, "math": 1.0, "code": 1.0},
                     "fixed_shares": {}}}


def _hydra_run(path, overrides):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return path


NEXUS = {"name": "nexus", "variant": "nexus", "outer": "adamw"}


def test_sweep_runs_share_one_group_and_carry_their_overrides(tmp_path):
    sweep = tmp_path / "multirun" / "2026-12-05_10-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    overrides = ["+experiment=tiny/mixture", "optim=nexus", "data=math40", "trainer.seed=1"]
    first = run_identity(_config(NEXUS), _hydra_run(sweep / "0", overrides))
    second = run_identity(_config({"name": "adamw"}, seed=0), _hydra_run(sweep / "1", overrides[:2]))
    assert first["name"] == "tiny_mixture-nexus(adamw)-math40-s1"
    assert second["name"] == "tiny_mixture-adamw-math40-s0"
    assert first["group"] == second["group"] == "tiny_mixture-sweep-2026-12-05_10-00-00"
    assert first["tags"] == overrides and first["overrides"] == overrides


def test_single_runs_group_their_seeds_and_name_a_custom_mixture(tmp_path):
    overrides = ["data=own", "data.path=data/own", "++data.domains={cooking:0.7,law:0.3}"]
    identity = run_identity(_config({"name": "adamw"}, "own", 2, {"cooking": 0.7, "law": 0.3}),
                            _hydra_run(tmp_path / "run", overrides))
    assert identity["name"] == "tiny-adamw-own[cooking:0.7,law:0.3]-s2"
    assert identity["group"] == "tiny-adamw-own[cooking:0.7,law:0.3]"
    plain = run_identity(_config({"name": "muon"}, "embedded", 0), tmp_path / "no_hydra")
    assert plain["name"] == "tiny-muon-embedded-s0" and plain["tags"] == [] and plain["group"] == "tiny-muon-embedded"


def test_the_metrics_logger_names_its_wandb_run(tmp_path, monkeypatch):
    calls = []
    fake = SimpleNamespace(init=lambda **kwargs: calls.append(kwargs) or SimpleNamespace(log=None, finish=None))
    monkeypatch.setitem(sys.modules, "wandb", fake)  # wandb is an optional extra, not installed in CI
    run_dir = _hydra_run(tmp_path / "run", ["optim=nexus", "data=math40", "trainer.seed=1"])
    cfg = LoggingConfig(jsonl=False, progress_bar=False, wandb=True, wandb_mode="offline")
    MetricsLogger(cfg, run_dir, total_steps=1, run_config=_config(NEXUS))
    (call,) = calls
    assert call["name"] == "tiny-nexus(adamw)-math40-s1" and call["group"] == "tiny-nexus(adamw)-math40"
    assert call["tags"] == ["optim=nexus", "data=math40", "trainer.seed=1"] and call["mode"] == "offline"
    assert call["config"]["overrides"] == call["tags"] and call["config"]["optim"] == NEXUS
