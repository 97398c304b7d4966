"""End to end: scripts/reproduce.py --scale tiny --in-process for every table of the registry into one run
root (runs shared between tables train once), each table's table.md, comparison.md and comparison.json with
all of its rows and finite losses."""

import importlib.util
import json
import math
import re

import pytest
import torch

from nexus_pretrain.experiments.registry import TABLES
from nexus_pretrain.experiments.runner import IN_PROCESS, PlannedRun, results_files, train
from nexus_pretrain.paths import REPO_ROOT
from nexus_pretrain.report.tables import load_layout


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", REPO_ROOT / "scripts" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def one_thread():
    """One torch thread: `pytest -n 2` runs two workers on the CI's two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _compared_rows(spec):
    """(group, row) of every row that is not its group's baseline in the table's layout."""
    baselines = {(g.label, r.label) for g in load_layout(spec.layout_path).groups for r in g.rows if r.baseline}
    return {(r.group, r.row) for r in spec.rows} - baselines


@pytest.mark.slow
def test_every_table_runs_end_to_end_at_tiny_scale(tmp_path, one_thread, capsys):
    main, root = _reproduce(), tmp_path / "runs"
    trained = 0
    for name, spec in TABLES.items():
        assert main([name, "--scale", "tiny", "--seeds", "0", "--run-root", str(root), "--in-process"]) == 0, name
        trained += int(re.search(rf"^{name}: \d+ runs, (\d+) to train$", capsys.readouterr().out, re.M).group(1))
        out = root / "tiny" / name
        report = json.loads((out / "comparison.json").read_text())
        rows = [(r.group, r.row) for r in spec.rows]
        assert report["missing"] == [] and [(r["group"], r["row"]) for r in report["runs"]] == rows, name
        for run in report["runs"]:
            results = results_files(run["run_dir"])[-1]
            metrics = json.loads(results.read_text())["metrics"]
            assert math.isfinite(metrics["pretrain"]) and math.isfinite(metrics["ood"]), (name, run["run_dir"])
        improvements = {(i["group"], i["row"], tuple(i["cell"])) for i in report["improvements"]}
        assert improvements == {(*row, cell) for row in _compared_rows(spec)
                                for cell in (("loss", "Pretrain"), ("loss", "OOD"))}, name
        assert all(math.isfinite(v) for i in report["improvements"] for v in i["values"]), name
        comparison = (out / "comparison.md").read_text()
        for group, row in rows:
            cell = rf"^\| {re.escape(group)} \| {re.escape(row)} \| Loss Pretrain \| (\S+) \|"
            line = re.search(cell, comparison, re.M)
            assert line and math.isfinite(float(line.group(1))), (name, group, row)
        table = (out / "table.md").read_text()
        assert all(f"| {row} |" in table for _, row in rows), name
    # every training run ran exactly once, however many tables share it
    assert trained == len(list((root / "tiny").rglob("hf/config.json"))) < sum(len(s.rows) for s in TABLES.values())


def test_a_failed_in_process_run_is_reported_like_a_failed_subprocess(tmp_path):
    overrides = ["trainer.global_batch=10", "trainer.micro_batch=4"]
    run = PlannedRun(TABLES["table1"].rows[0], overrides, 0, tmp_path / "run")
    with pytest.raises(RuntimeError, match=r"(?s)training failed \(exit 1\): trainer.global_batch=10 .*"
                                           r"global_batch=10 is not divisible by optim.inner_steps"):
        train(run, IN_PROCESS)
    assert "Traceback" in (tmp_path / "run" / "reproduce_train.log").read_text()
