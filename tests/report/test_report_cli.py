"""nexus-report: run directories keep the old comparison; results JSONs give tables and figures."""

import json

import pytest
import yaml

from nexus_pretrain import cli
from nexus_pretrain.evaluation.results import write_results
from nexus_pretrain.paths import REPO_ROOT

from .results_factory import ADAMW_1B, NEXUS_1B, make_result

pytest.importorskip("matplotlib")  # --plots


def _fake_run(root, name, optimizer, offset):
    run = root / name
    run.mkdir()
    optim = {"name": "nexus", "variant": "nexus", "outer": "adamw"} if optimizer == "nexus" else {"name": "adamw"}
    (run / "config.yaml").write_text(yaml.safe_dump({"optim": optim, "model": {"preset": "tiny"}}))
    lines = []
    for step in (10, 20, 30):
        lines.append({"step": step, "loss": 5.0 - step / 10 - offset, "tokens": step * 100})
        lines.append({"step": step, "val/web": 5.1 - step / 10 - offset, "val/math": 3.0 - offset,
                      "val/pretrain": 4.0 - step / 20 - offset, "ood/legal": 6.0 - offset, "ood/mean": 6.0 - offset})
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


@pytest.fixture
def runs(tmp_path):
    return _fake_run(tmp_path, "adamw", "adamw", 0.0), _fake_run(tmp_path, "nexus", "nexus", 0.05)


def test_run_dirs_keep_the_old_table_and_get_curves(runs, tmp_path, capsys):
    adamw, nexus = runs
    cli.report([str(adamw), str(nexus), "--baseline", str(adamw), "--plots", str(tmp_path / "fig")])
    out = capsys.readouterr().out
    assert "| run | optimizer | step |" in out and "| nexus | nexus(adamw) | 30 |" in out and "improvement over" in out
    # nexus's losses are 0.05 below adamw's: positive, as the note under the table says
    assert "| improvement over adamw |  |  |  | +0.0500 | +0.0500 |" in out and "positive means the row's loss is lower" in out
    for name in ("loss_curves", "domain_losses"):
        for ext in ("png", "pdf"):
            assert (tmp_path / "fig" / f"{name}.{ext}").stat().st_size > 1000


def test_results_jsons_give_paper_tables_in_three_formats_and_fig7a(runs, tmp_path, capsys):
    adamw_run, nexus_run = runs
    files = []
    for i, (base, run_dir) in enumerate(((ADAMW_1B, adamw_run), (NEXUS_1B, nexus_run))):
        for step, shift in ((1000, 0.2), (2000, 0.0)):  # two checkpoints per run for the scatter
            r = json.loads(json.dumps(base))
            r.update(step=step, run_dir=str(run_dir))
            r["metrics"]["pretrain"] += shift
            r["metrics"]["loss"]["All"] += shift
            files.append(write_results(r, tmp_path / f"r{i}_{step}.json"))
    final = [f for f in files if f.name.endswith("_2000.json")]
    out_dir, fig_dir = tmp_path / "tables", tmp_path / "fig"
    cli.report([*map(str, final), "--table", str(REPO_ROOT / "eval/tables/table1.yaml"), "--format", "md,tex",
                "--out", str(out_dir)])
    printed = capsys.readouterr().out
    assert "| 1B | AdamW | Acc. (↑) |  |  | 32.1 |" in printed and "\\textbf{+5.4}" in printed
    assert "|  |  | Loss (↓) | 1.826 | 1.433 | 2.363 |" in printed  # losses on the loss row
    assert {p.name for p in out_dir.iterdir()} == {"table1.md", "table1.tex", "table1.csv"}
    cli.report([*map(str, files), "--baseline", "adamw", "--plots", str(fig_dir)])
    for name in ("downstream_vs_pretrain", "loss_curves", "domain_losses"):
        assert (fig_dir / f"{name}.png").stat().st_size > 1000 and (fig_dir / f"{name}.pdf").is_file()


def test_default_table_rows_per_optimizer_with_chosen_baseline(tmp_path, capsys):
    paths = [write_results(make_result(o, 2.0, 2.0, [20.0] * 8, [1.5] * 8), tmp_path / f"{o}.json")
             for o in ("nexus(adamw)", "adamw")]
    cli.report([str(tmp_path), "--baseline", "adamw", "--format", "csv"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith(",adamw,Acc.") and lines[3].startswith(",nexus(adamw),Acc.") and ",Improv.," in lines[5]
    assert paths


def test_bad_inputs_fail_with_one_line(runs, tmp_path):
    adamw, _ = runs
    result = write_results(ADAMW_1B, tmp_path / "a.json")
    with pytest.raises(SystemExit, match="mixed inputs"):
        cli.report([str(adamw), str(result)])
    (tmp_path / "other.json").write_text('{"schema": "something else"}')
    with pytest.raises(SystemExit, match="other.json: not a nexus-eval results JSON"):
        cli.report([str(tmp_path / "other.json")])
    with pytest.raises(SystemExit, match="--baseline 'sgd' matches no result"):
        cli.report([str(result), "--baseline", "sgd"])
