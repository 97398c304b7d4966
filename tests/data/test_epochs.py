"""Epochs per domain (data/epochs.py): how many times a run trains on each domain's tokens, warned at start
when past where repeated data trains like fresh data, logged as epochs/<domain>, carried into results JSONs
and noted under report tables."""

import json
import warnings

import pytest
from omegaconf import OmegaConf

from nexus_pretrain.data import epochs
from nexus_pretrain.demo import compose_config
from nexus_pretrain.evaluation.results import run_metadata
from nexus_pretrain.report.render import to_markdown
from nexus_pretrain.report.tables import build_table, default_layout
from nexus_pretrain.run_data import build_data
from nexus_pretrain.train.preflight import PreflightWarning, preflight
from nexus_pretrain.train.run_identity import resolved
from nexus_pretrain.train.trainer import Trainer

from ..report.results_factory import make_result

SMALL = ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
         "data.seq_len=16", "data.eval_sequences=2", "trainer.global_batch=4", "trainer.micro_batch=2",
         "logging.progress_bar=false", "trainer.export_hf=false", "backend.device=cpu"]


def test_epochs_are_tokens_trained_over_tokens_held():
    assert epochs.epochs({"math": 300.0, "web": 50.0}, {"math": 100, "web": 200}) == {"math": 3.0, "web": 0.25}
    # 800 tokens, weights 1:3, so 200 and 600 tokens over 100 and 1200 held
    assert epochs.planned_epochs({"math": 1.0, "web": 3.0}, {"math": 100, "web": 1200}, 800) == {"math": 2.0, "web": 0.5}
    assert epochs.repeated({"math": 4.5, "web": 4.0, "code": 12.0}) == {"math": 4.5, "code": 12.0}
    assert epochs.describe({"math": 4.5, "code": 12.0}) == "code 12, math 4.5"


def test_a_run_that_would_repeat_a_domain_past_four_epochs_is_warned_at_start(tmp_path):
    cfg = compose_config([*SMALL, f"trainer.run_dir={tmp_path}", "trainer.max_steps=40000"])
    data = build_data(cfg.data, seed=0)
    held = data.sampler.train_tokens
    total = 40000 * 4 * 16
    expected = {d: total * w / held[d] for d, w in data.sampler.weights.items()}
    many = {d: e for d, e in expected.items() if e > 4}
    assert many  # the embedded corpus is small: 2.56M tokens repeat some domain
    with pytest.warns(PreflightWarning) as caught:
        preflight(cfg, data, tmp_path / "run", 10_000)
    message = str(next(w.message for w in caught if "epochs" in str(w.message)))
    assert message.startswith("data: trainer.max_steps=40000 would train on these domains' tokens this many times "
                              f"(epochs): {epochs.describe(many)}; past about 4")


def test_a_run_within_four_epochs_is_not_warned(tmp_path):
    cfg = compose_config([*SMALL, f"trainer.run_dir={tmp_path}", "trainer.max_steps=20"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", PreflightWarning)
        preflight(cfg, build_data(cfg.data, seed=0), tmp_path / "run", 10_000)


def test_runs_log_epochs_and_results_carry_the_last(tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(compose_config([*SMALL, f"trainer.run_dir={run}", "trainer.max_steps=3", "trainer.log_every=1",
                                      "trainer.eval_every=0"]))
    trainer.fit()
    held = trainer.data.sampler.train_tokens
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "tokens" in r]
    assert len(logged) == 3
    for row in logged:
        assert {k: v for k, v in row.items() if k.startswith("epochs/")} == {
            f"epochs/{d}": row[f"tokens/{d}"] / held[d] for d in held if f"tokens/{d}" in row}
    assert run_metadata(run)["epochs"] == {k[len("epochs/"):]: v for k, v in logged[-1].items()
                                           if k.startswith("epochs/")}
    assert run_metadata(run, step=1)["epochs"]["math"] == logged[0]["epochs/math"]


def test_results_of_runs_that_logged_no_epochs_have_none(tmp_path):
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(resolved(compose_config(SMALL))))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 5.0, "tokens": 64}) + "\n")
    assert run_metadata(tmp_path)["epochs"] == {}


@pytest.mark.parametrize("math_epochs, noted", [(4.0, False), (6.25, True)])
def test_report_tables_note_repeated_data(math_epochs, noted):
    results = [make_result("adamw", 3.0, 3.5, [40] * 8, [1.0] * 8),
               make_result("nexus", 3.0, 3.4, [41] * 8, [0.9] * 8)]
    results[0]["epochs"] = {"math": math_epochs, "web": 0.5}
    results[1]["epochs"] = {"math": 5.0, "web": 0.5} if noted else {"math": 1.0}
    text = to_markdown(build_table(default_layout(results, "adamw"), results))
    note = ("Repeated data: runs shown trained on some domains more than 4 times (most epochs: math 6.25); past "
            "about 4, repeated tokens are worth less than fresh ones (Muennighoff et al. 2023)")
    assert (note in text) is noted


def test_run_comparisons_note_repeated_data(tmp_path):
    from nexus_pretrain.report.sweep import compare_runs

    from ..report.test_report_cli import _fake_run

    adamw, nexus = _fake_run(tmp_path, "adamw", "adamw", 0.0), _fake_run(tmp_path, "nexus", "nexus", 0.05)
    assert "Repeated data" not in compare_runs([adamw, nexus])
    with open(nexus / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 30, "tokens": 3000, "epochs/web": 2.5, "epochs/math": 9.0}) + "\n")
    assert "(most epochs: math 9); past about 4" in compare_runs([adamw, nexus])
