"""configs/experiment/: every file and sweep point composes and validates, carries Tab. 6's values, and
its max_steps is the paper's stated token budget (the Chinchilla helper's where the paper states none);
the registry's rows match the tables' layouts."""

import re

import pytest

from nexus_pretrain.config_checks import validate
from nexus_pretrain.experiments.files import (SCALES, budget_spec, compose_many, experiment_name,
                                              experiment_names, experiment_path, point_overrides, sweep_points)
from nexus_pretrain.experiments.registry import SFT_BRANCH_STEP, TABLES, table_spec
from nexus_pretrain.report.tables import load_layout, matches

PAPER_EXPERIMENTS = ["main_1b", "main_3b", "mixture", "muon", "muon_nexus", "public_1b", "public_3b", "schedule",
                     "size_130m", "size_1_2b", "size_300m", "token_scaling_4x"]
FINE_TUNING = ["sft"]  # Tab. 11: starts from pretrained weights; no Chinchilla budget, its own LR (App. 14.6)
OURS = ["minirepro", "isoloss"]  # not paper experiments: one-GPU designs (their CPU forms are their runners' smoke phases)
# Training tokens the paper states: Tab. 6 (1B 50B, 3B 110B) and Sec. 4.4 (4x = twice the 3B's 2x run);
# the sizes Tab. 6 leaves out take the 20 x N helper (ours).
STATED_TOKENS = {"main_1b": 50e9, "public_1b": 50e9, "main_3b": 110e9, "schedule": 110e9, "mixture": 110e9,
                 "public_3b": 110e9, "muon": 110e9, "muon_nexus": 110e9, "token_scaling_4x": 220e9}
HELPER_BUDGET = ["size_130m", "size_300m", "size_1_2b"]


@pytest.fixture(scope="module")
def composed():
    """{(scale, name, point tuple): TrainConfig} for every sweep point of every file (one Hydra init)."""
    keys, lists = [], []
    for scale in SCALES:
        for name in experiment_names(scale):
            for point in sweep_points(name, scale):
                keys.append((scale, name, tuple(point.items())))
                lists.append([f"+experiment={experiment_name(name, scale)}", *point_overrides(point)])
    return dict(zip(keys, compose_many(lists)))


def test_the_same_experiments_exist_at_both_scales():
    assert experiment_names("paper") == sorted(PAPER_EXPERIMENTS + FINE_TUNING + OURS)
    assert experiment_names("tiny") == sorted(PAPER_EXPERIMENTS + FINE_TUNING)


def test_every_sweep_point_composes_and_validates(composed):
    assert len(composed) == 2 * (2 + 2 + 6 + 3 + 2 + 2 + 2 + 4 + 2 + 2 + 2 + 2 + 2) + 6 + 12  # minirepro 2x3, isoloss 2x6
    for cfg in composed.values():
        validate(cfg)


def test_files_are_global_package_and_sweep_the_optimizer():
    for scale in SCALES:
        for name in experiment_names(scale):
            text = experiment_path(name, scale).read_text()
            assert text.startswith("# @package _global_\n"), name
            assert "optim" in sweep_points(name, scale)[0], name


def test_paper_scale_values_follow_tab6(composed):
    for (scale, name, point), cfg in composed.items():
        if scale != "paper" or name in FINE_TUNING + OURS:
            continue
        where = f"{name} {point}"
        t, o, s, d = cfg.trainer, cfg.optim, cfg.schedule, cfg.data
        assert t.global_batch == 256 and d.seq_len == 2048, where
        assert list(o.betas) == [0.9, 0.95] and o.eps == 1e-10 and o.max_grad_norm == 1.0, where
        assert o.inner_lr == 0.01, where
        assert s.warmup_steps == 1000, where
        if s.name == "wsd":
            assert s.decay_steps == 10000, where
        muon_outer = o.name == "muon" or (o.name == "nexus" and o.outer == "muon")
        assert o.weight_decay == (0.1 if muon_outer else 0.2), where
        spec = budget_spec(name)
        assert cfg.model.preset == spec.preset, where
        # Tab. 6: 1B (llama_520m) LR 0.002, 3B (llama_3b) LR 0.001; sizes the paper leaves out follow the nearest
        assert o.lr == {"llama_130m": 0.002, "llama_300m": 0.002, "llama_520m": 0.002, "llama_1b": 0.001,
                        "llama_3b": 0.001}[cfg.model.preset], where
        assert spec.multiplier == {"llama_520m": 4, "llama_3b": 4 if name == "token_scaling_4x" else 2}.get(
            cfg.model.preset, spec.multiplier), where


def test_max_steps_is_the_stated_token_budget(composed):
    from nexus_pretrain.data.chinchilla import chinchilla_tokens, steps_for

    assert sorted([*STATED_TOKENS, *HELPER_BUDGET]) == sorted(PAPER_EXPERIMENTS)
    for name in PAPER_EXPERIMENTS:
        spec = budget_spec(name)
        assert (spec.global_batch, spec.seq_len) == (256, 2048)
        assert spec.paper_tokens == STATED_TOKENS.get(name), name
        tokens = STATED_TOKENS.get(name) or chinchilla_tokens(spec.preset, spec.multiplier)
        steps = steps_for(int(tokens), 256, 2048)
        assert steps == spec.max_steps()
        text = experiment_path(name).read_text()
        assert re.search(rf"^  max_steps: {steps}\b", text, re.M), name
        assert f"= {steps:,}" in text, f"{name}: the comment's arithmetic does not end in {steps:,}"
        if name in STATED_TOKENS:  # the helper stays an option, its steps written next to the paper's
            assert f"trainer.max_steps={spec.max_steps(spec.helper_tokens())})" in text, name
        for (scale, n, _), cfg in composed.items():
            if (scale, n) == ("paper", name):
                assert cfg.trainer.max_steps == steps, name


def test_known_budgets():
    assert budget_spec("main_1b").max_steps() == 95_368            # 50B tokens (Tab. 6)
    assert budget_spec("main_3b").max_steps() == 209_809           # 110B tokens (Tab. 6)
    assert budget_spec("token_scaling_4x").max_steps() == 419_617  # 220B tokens (Sec. 4.4)
    assert budget_spec("size_130m").max_steps() == 19_445          # the helper: 10,194,432,000 tokens
    main_1b = budget_spec("main_1b")
    assert main_1b.max_steps(main_1b.helper_tokens()) == 78_661    # the helper's 41,240,678,400 tokens


def test_every_file_sets_k_as_a_stated_choice(composed):
    """K (optim.inner_steps) is set in every file, with a comment saying it is ours; at paper scale it is
    32 inner batches of 8 sequences, at tiny scale 2 of 2."""
    for scale in SCALES:
        for name in experiment_names(scale):
            text = experiment_path(name, scale).read_text()
            assert re.search(r"^  inner_steps: \d+ +# ours: K", text, re.M), (scale, name)
    for (scale, name, point), cfg in composed.items():
        k, inner_batch = {"paper": (8, 32) if name in OURS else (32, 8), "tiny": (2, 2)}[scale]
        assert cfg.optim.inner_steps == k, (scale, name, point)
        assert cfg.trainer.global_batch // cfg.optim.inner_steps == inner_batch, (scale, name, point)


def test_sft_branches_where_the_cosine_runs_reach_the_sft_lr(composed):
    """App. 14.6: the SFT LR (2e-5, Tab. 11) is the pretraining LR at the branch checkpoint, so SFT continues
    the decay. Our cosine base runs reach it at SFT_BRANCH_STEP, a step they checkpoint."""
    from nexus_pretrain.optim.schedule import lr_multiplier

    sft = next(cfg for (scale, name, _), cfg in composed.items() if (scale, name) == ("paper", "sft"))
    assert sft.optim.lr == 2e-5
    for optim in ("adamw", "nexus"):
        base = composed[("paper", "schedule", (("optim", optim), ("schedule", "cosine")))]
        t = base.trainer
        lr = base.optim.lr * lr_multiplier(base.schedule, SFT_BRANCH_STEP, t.max_steps)
        assert lr == pytest.approx(sft.optim.lr, rel=0.01)  # 1.989e-5
        for neighbour in (SFT_BRANCH_STEP - t.checkpoint_every, SFT_BRANCH_STEP + t.checkpoint_every):
            other = base.optim.lr * lr_multiplier(base.schedule, neighbour, t.max_steps)
            assert abs(other - 2e-5) > abs(lr - 2e-5)  # the checkpoint nearest to 2e-5
        assert SFT_BRANCH_STEP % t.checkpoint_every == 0 and SFT_BRANCH_STEP < t.max_steps
        assert base.optim.lr * lr_multiplier(base.schedule, 100_000, t.max_steps) > 25 * 2e-5  # why not step 100k


def test_tiny_variants_mirror_the_paper_files(composed):
    for name in PAPER_EXPERIMENTS:
        assert sweep_points(name, "tiny") == sweep_points(name, "paper"), name
        for point in sweep_points(name, "paper"):
            paper = composed[("paper", name, tuple(point.items()))]
            tiny = composed[("tiny", name, tuple(point.items()))]
            assert tiny.model.preset == "tiny" and tiny.trainer.max_steps <= 100, name
            assert (tiny.schedule.name, tiny.optim.name, tiny.optim.outer) == \
                (paper.schedule.name, paper.optim.name, paper.optim.outer), name
            if not name.startswith("public"):
                assert tiny.data.name == paper.data.name and tiny.data.fixed_shares == paper.data.fixed_shares, name
            assert tiny.optim.weight_decay == paper.optim.weight_decay, name


def _fake_result(cfg, tag):
    """The fields of a nexus-eval results document that the layouts match on."""
    o = cfg.optim
    return {"model": cfg.model.preset, "optimizer": o.name if o.name != "nexus" else f"{o.variant}({o.outer})",
            "data_mixture": {"name": cfg.data.name}, "config": {"schedule": {"name": cfg.schedule.name}}, "tag": tag}


def test_registry_rows_are_the_layout_rows_and_match_them(composed):
    for name, spec in TABLES.items():
        layout = load_layout(spec.layout_path)
        layout_rows = [(g.label, r.label) for g in layout.groups for r in g.rows]
        assert [(r.group, r.row) for r in spec.rows if not r.extra] == layout_rows, name
        for row in spec.rows:
            assert dict(row.point) in sweep_points(row.experiment), (name, row)
            cfg = composed[("paper", row.experiment, tuple(row.point))]
            if row.extra:
                assert (cfg.optim.name, cfg.optim.outer) == ("nexus", "muon")
                continue
            spec_row = next(r for g in layout.groups if g.label == row.group for r in g.rows if r.label == row.row)
            assert matches(_fake_result(cfg, row.tag), spec_row.match), (name, row)
    assert table_spec("1") is TABLES["table1"] and table_spec("Table10") is TABLES["table10"]
    with pytest.raises(ValueError, match="unknown table"):
        table_spec("table5")


@pytest.mark.parametrize("scale", SCALES)
def test_rows_shared_between_tables_share_one_run_directory(scale, tmp_path):
    from nexus_pretrain.experiments.runner import plan_runs

    def dirs(table, group, seeds=(0,)):
        return {r.row.row: r.run_dir for r in plan_runs(TABLES[table], scale, seeds, tmp_path, groups=[group])}

    main = dirs("table1", "3B")
    assert dirs("table3", "WSD") == main and dirs("table7", "Math10") == main and dirs("table9", "2.3B") == main
    t10 = dirs("table10", "")
    assert (t10["AdamW"], t10["Adam+Nexus"]) == (main["AdamW"], main["Nexus"])
    assert dirs("table2", "4")["AdamW"] != main["AdamW"]
    assert dirs("table1", "1B")["AdamW"] != main["AdamW"]
    runs = plan_runs(TABLES["table1"], scale, [0, 1], tmp_path, groups=["1B"])
    assert [r.run_dir.name for r in runs] == ["seed0", "seed1", "seed0", "seed1"]
    assert all(str(r.run_dir).startswith(str(tmp_path.resolve() / scale)) for r in runs)
    assert runs[0].train_command(["nexus-train"])[-3:] == ["trainer.seed=0", f"trainer.run_dir={runs[0].run_dir}",
                                                          "logging.progress_bar=false"]
