"""Table 11 in the reproduce machinery: base runs shared with Table 3's cosine rows, fine-tuning runs that
start from them, pre-SFT rows that score the bases on the SFT data; and (slow) the whole tiny pipeline."""

import importlib.util
import json

import pytest

from nexus_pretrain.experiments.paper import load_paper
from nexus_pretrain.experiments.registry import SFT_BRANCH_STEP, TABLES, table_spec
from nexus_pretrain.experiments.runner import plan_runs, training_waves
from nexus_pretrain.paths import REPO_ROOT

SMALL = ["model.dim=64", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=128", "data.eval_sequences=4",
         "trainer.global_batch=8", "trainer.micro_batch=2", "trainer.max_steps=4", "trainer.log_every=4",
         "trainer.eval_every=0", "trainer.checkpoint_every=0", "schedule.warmup_steps=1"]


def test_paper_numbers_are_transcribed():
    paper = load_paper(TABLES["table11"].layout_path)
    assert set(paper) == {("Pre-SFT", "AdamW"), ("Pre-SFT", "Nexus"), ("Post-SFT", "AdamW"), ("Post-SFT", "Nexus")}
    assert paper[("Pre-SFT", "Nexus")][("loss", "Pretrain")] == 1.647  # the SFT loss column
    assert paper[("Post-SFT", "Nexus")][("acc", "All")] == 42.7
    for group in ("Pre-SFT", "Post-SFT"):
        base, nexus = paper[(group, "AdamW")], paper[(group, "Nexus")]
        for (kind, col), printed in nexus.items():
            if kind == "improv_loss":
                assert base[("loss", col)] - nexus[("loss", col)] == pytest.approx(printed, abs=0.0011)
            elif kind == "improv_acc":
                assert nexus[("acc", col)] - base[("acc", col)] == pytest.approx(printed, abs=0.11)


@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_plan_shares_bases_with_table3_and_orders_training(scale, tmp_path):
    runs = plan_runs(table_spec("11"), scale, [0, 1], tmp_path)
    cosine = {r.row.row: r.run_dir for r in plan_runs(TABLES["table3"], scale, [0], tmp_path, groups=["Cosine"])}
    by = {(r.row.group, r.row.row, r.seed): r for r in runs}
    for optim in ("AdamW", "Nexus"):
        pre, post = by[("Pre-SFT", optim, 0)], by[("Post-SFT", optim, 0)]
        assert pre.base.run_dir == post.base.run_dir == cosine[optim]
        assert pre.run_dir == post.run_dir / "pre_sft" and post.run_dir.parent.name == f"from-{cosine[optim].parent.name}"
        command = post.train_command(["nexus-train"])
        assert f"trainer.init_from={cosine[optim] / 'hf'}" in command  # no branch checkpoint kept here
        assert post.config.data.source == "sft" and pre.row.tag == "pre_sft" and post.row.tag == "post_sft"
    checkpoint = by[("Post-SFT", "AdamW", 1)].base.run_dir / "checkpoints" / f"step_{SFT_BRANCH_STEP:08d}"
    checkpoint.mkdir(parents=True)
    assert f"trainer.init_from={checkpoint}" in by[("Post-SFT", "AdamW", 1)].train_command(["nexus-train"])
    first, second = training_waves(runs)
    assert {r.run_dir for r in first} == {r.base.run_dir for r in runs} and len(first) == 4
    assert {r.run_dir for r in second} == {r.run_dir for r in runs if r.row.group == "Post-SFT"}


@pytest.mark.slow
def test_reproduce_table11_tiny(tmp_path):
    spec = importlib.util.spec_from_file_location("reproduce", REPO_ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["table11", "--scale", "tiny", "--run-root", str(tmp_path), "--in-process",
            *[a for o in SMALL for a in ("--override", o)]]
    assert module.main(args) == 0
    report = json.loads((tmp_path / "tiny" / "table11" / "comparison.json").read_text())
    assert report["missing"] == [] and len(report["runs"]) == 4
    cells = {(i["group"], tuple(i["cell"])): i for i in report["improvements"]}
    assert set(cells) == {(g, ("loss", c)) for g in ("Pre-SFT", "Post-SFT") for c in ("Pretrain", "OOD")}
    assert cells[("Post-SFT", ("loss", "Pretrain"))]["paper"] == pytest.approx(0.007)
    table = (tmp_path / "tiny" / "table11" / "table.md").read_text()
    assert "| Phase | Optim. | Metric | SFT | OOD |" in table and "| Pre-SFT | AdamW | Acc. (↑) | —" not in table
