"""WSD cooldown branches (fully decayed endpoints along a run) and in-loop downstream losses."""

import json

import pytest

from nexus_pretrain.analysis.isoloss import load_run
from nexus_pretrain.config_checks import validate
from nexus_pretrain.demo import compose_config
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.optim.schedule import lr_multiplier
from nexus_pretrain.rundir.metrics_file import read_metrics
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.cooldown import branch_config, branch_dir, cooldown_steps, run_branches
from nexus_pretrain.train.trainer import Trainer

# 10 steps: warmup 2, stable to step 7, decay 3. Branches from steps 4 and 6 (0.6 of 10).
SMALL = ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
         "data.seq_len=16", "data.eval_sequences=2", "trainer.global_batch=4", "optim.inner_steps=2",
         "trainer.micro_batch=2", "trainer.max_steps=10", "schedule.warmup_steps=2", "schedule.decay_steps=3",
         "trainer.log_every=1", "trainer.eval_every=0", "trainer.checkpoint_every=0", "trainer.keep_last=1",
         "trainer.export_hf=false", "logging.progress_bar=false", "optim=nexus", "trainer.cooldown_from=[4,0.6]"]


def by_step(run_dir):
    """Step -> every value logged at it (training and evaluation lines merged)."""
    rows = {}
    for record in read_metrics(run_dir / "metrics.jsonl"):
        rows.setdefault(record["step"], {}).update(record)
    return rows


def test_cooldown_branches_decay_from_kept_stable_checkpoints(tmp_path):
    cfg = compose_config([*SMALL, f"trainer.run_dir={tmp_path}"])
    assert cooldown_steps(cfg) == [4, 6]
    Trainer(cfg).fit()
    kept = sorted(ckpt.checkpoint_step(p) for p in ckpt.list_checkpoints(tmp_path))
    assert kept == [4, 6, 10]  # keep_last=1 rotates the others away, never the branch points
    branches = run_branches(cfg, Trainer)
    assert branches == [branch_dir(tmp_path, 4), branch_dir(tmp_path, 6)]

    main = by_step(tmp_path)
    for step, path in zip((4, 6), branches):
        assert json.loads((path / "branch.json").read_text()) == {"parent": str(tmp_path), "from_step": step,
                                                                  "max_steps": step + 3}
        rows = by_step(path)
        assert sorted(rows) == [step + 1, step + 2, step + 3]  # the decay phase only
        # The first branch step starts from the parent's weights on the parent's batch: the same loss.
        assert rows[step + 1]["loss"] == main[step + 1]["loss"]
        branch = branch_config(cfg, step)
        lrs = [rows[s]["lr"] for s in sorted(rows)]
        assert lrs == pytest.approx([cfg.optim.lr * lr_multiplier(branch.schedule, s - 1, step + 3) for s in sorted(rows)])
        assert lrs[0] < cfg.optim.lr and all(a > b > 0 for a, b in zip(lrs, lrs[1:]))  # decaying, never 0
        assert "val/pretrain" in rows[step + 3] and "ood/mean" in rows[step + 3]  # a fully decayed endpoint

    # nexus-analyze isoloss sees the main run's endpoint and both branches'.
    run = load_run(tmp_path, "ood/mean")
    assert [e.from_step for e in run.endpoints] == [None, 4, 6]
    assert run.endpoints[1].pretrain > run.endpoints[2].pretrain > run.endpoints[0].pretrain  # later: lower

    # Running the branches again finds them complete and trains nothing.
    before = [(p / "metrics.jsonl").read_text() for p in branches]
    assert run_branches(cfg, Trainer) == branches
    assert [(p / "metrics.jsonl").read_text() for p in branches] == before


@pytest.mark.parametrize("overrides,message", [
    (["trainer.cooldown_from=[9]"], "trainer.cooldown_from=9.0 is step 9, outside the stable phase"),
    (["trainer.cooldown_from=[1]"], "outside the stable phase"),
    (["schedule=cosine", "trainer.cooldown_from=[4]"], "trainer.cooldown_from needs schedule=wsd"),
    (["trainer.eval_tasks=[gsm8k]"], "trainer.eval_tasks needs trainer.eval_data_dir"),
])
def test_bad_cooldown_and_eval_task_settings_are_one_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config([*SMALL, f"trainer.run_dir={tmp_path}", *overrides]))


def test_inloop_downstream_loss_is_nexus_evals(tmp_path):
    """downstream/<task> logged at each evaluation equals nexus-eval's downstream loss of the exported model."""
    pytest.importorskip("lm_eval")
    from tests.evaluation.benchmark_data import write_benchmark_data

    from nexus_pretrain.evaluation.benchmarks import select
    from nexus_pretrain.evaluation.downstream_loss import model_downstream_losses

    data_dir = write_benchmark_data(tmp_path / "benchmarks")
    run_dir = tmp_path / "run"
    cfg = compose_config([*SMALL, "trainer.cooldown_from=[]", "trainer.max_steps=3", "schedule.decay_steps=1",
                          "trainer.export_hf=true", "trainer.eval_tasks=[gsm8k,math500]", "trainer.eval_task_limit=4",
                          f"trainer.eval_data_dir={data_dir}", f"trainer.run_dir={run_dir}"])
    final = Trainer(cfg).fit()
    want = model_downstream_losses(run_dir / "hf", select(["gsm8k", "math500"]), data_dir, limit=4)
    assert final["downstream/gsm8k"] == pytest.approx(want["GSM8k"].loss, rel=1e-5)
    assert final["downstream/math500"] == pytest.approx(want["MATH"].loss, rel=1e-5)
    assert final["time/downstream_s"] > 0
