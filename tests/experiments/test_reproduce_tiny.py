"""End to end: scripts/reproduce.py table1 --scale tiny, group 1B (AdamW and Nexus), one seed, at a very
small size; then --collect-only rebuilds the same comparison without training."""

import csv
import importlib.util
import io
import json

import pytest

from nexus_pretrain.paths import REPO_ROOT

SMALL = ["model.dim=64", "model.n_layers=2", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=128",
         "data.seq_len=32", "data.eval_sequences=4", "trainer.global_batch=8", "trainer.micro_batch=2",
         "trainer.max_steps=4", "trainer.log_every=4", "trainer.eval_every=0", "trainer.checkpoint_every=0",
         "schedule.warmup_steps=2", "schedule.decay_steps=2"]


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", REPO_ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.slow
def test_table1_tiny_two_optimizers_one_seed(tmp_path, capsys):
    main = _reproduce()
    args = ["table1", "--scale", "tiny", "--groups", "1B", "--seeds", "0", "--run-root", str(tmp_path / "runs"), "--jobs", "2",
            *[a for o in SMALL for a in ("--override", o)]]
    assert main(args) == 0
    out = tmp_path / "runs" / "tiny" / "table1"
    report = json.loads((out / "comparison.json").read_text())
    assert report["missing"] == [] and len(report["runs"]) == 2
    assert {r["row"] for r in report["runs"]} == {"AdamW", "Nexus"}
    for run in report["runs"]:
        assert (tmp_path / "runs" / "tiny") in __import__("pathlib").Path(run["run_dir"]).parents
        assert "+experiment=tiny/main_1b" in run["overrides"]
    cells = {tuple(i["cell"]): i for i in report["improvements"]}
    assert set(cells) == {("loss", "Pretrain"), ("loss", "OOD")}  # no benchmarks at --scale tiny without --data-dir
    assert cells[("loss", "Pretrain")]["paper"] == pytest.approx(0.0)
    assert cells[("loss", "OOD")]["paper"] == pytest.approx(0.005)
    assert len(cells[("loss", "Pretrain")]["values"]) == 1 and cells[("loss", "Pretrain")]["ci95"] is None
    (check,) = report["same_pretraining_loss"]
    assert check["same"] == (abs(check["delta"]) < 0.01) and check["paper_same"] is True
    rows = list(csv.reader(io.StringIO((out / "table.csv").read_text())))
    assert rows[0][:4] == ["Model", "Optim.", "Metric", "Pretrain."]
    adamw = next(r for r in rows if r[1] == "AdamW")
    assert float(adamw[3]) > 0 and "MMLU" not in rows[0]  # benchmark columns only where results have them
    text = (out / "comparison.md").read_text()
    assert "| 1B | AdamW | Loss Pretrain |" in text and "1.826" in text

    # --collect-only trains nothing and gives the same numbers
    before = {r["run_dir"]: (tmp_path / r["run_dir"]).stat().st_mtime for r in report["runs"]}
    assert main([*args, "--collect-only"]) == 0
    again = json.loads((out / "comparison.json").read_text())
    assert again["improvements"] == report["improvements"]
    assert before == {r["run_dir"]: (tmp_path / r["run_dir"]).stat().st_mtime for r in report["runs"]}
