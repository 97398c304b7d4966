"""nexus-report over a sweep: the sweep's directory as input, rows labelled by the swept values, only seeds
aggregated, warnings for empty cells, row labels and titles from the data."""

import json

import pytest
import yaml

from nexus_pretrain import cli
from nexus_pretrain.evaluation.results import write_results
from nexus_pretrain.paths import REPO_ROOT
from nexus_pretrain.report.tables import build_table, default_layout, load_layout, with_match

from .results_factory import make_result

SWEEP = [("math10", "adamw", 0, 2.0), ("math10", "adamw", 1, 2.2), ("math10", "nexus", 0, 1.9),
         ("math10", "nexus", 1, 2.1), ("math40", "adamw", 0, 3.0), ("math40", "nexus", 0, 2.5)]


@pytest.fixture
def sweep_dir(tmp_path):
    """A Hydra multirun directory as nexus-train -m writes it: multirun.yaml and one numbered run per job."""
    root = tmp_path / "multirun" / "2026-12-05_10-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for job, (data, optim, seed, loss) in enumerate(SWEEP):
        run = root / str(job)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
            [f"data={data}", f"optim={optim}", f"trainer.seed={seed}", "trainer.max_steps=4"]))
        optim_cfg = {"name": "nexus", "variant": "nexus", "outer": "adamw"} if optim == "nexus" else {"name": "adamw"}
        (run / "config.yaml").write_text(yaml.safe_dump({"optim": optim_cfg, "trainer": {"seed": seed},
                                                         "data": {"name": data}, "model": {"preset": "tiny"}}))
        rows = [{"step": 4, "loss": loss + 0.5}, {"step": 4, "val/math": loss - 0.5, "val/pretrain": loss, "ood/mean": 9.0}]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_a_sweep_directory_is_a_table_of_swept_values_with_seeds_aggregated(sweep_dir, capsys):
    """Before: the sweep's directory had 'no results JSON in it', and its files ('DIR/*') were 'mixed inputs';
    rows were labelled 0-5."""
    cli.report([str(sweep_dir)])
    out = capsys.readouterr().out
    assert "| data=math10 optim=adamw | adamw | 4 | 2 | 2.1000 ± 1.2706 | 9.0000 ± 0.0000 | 1.6000 ± 1.2706 | " \
           "2.6000 ± 1.2706 |" in out  # mean of 2.0 and 2.2 +- t(0.975, 1) * 0.1414 / sqrt(2)
    assert "| data=math40 optim=nexus | nexus(adamw) | 4 | 1 | 2.5000 | 9.0000 | 2.0000 | 3.0000 |" in out
    assert len([line for line in out.splitlines() if line.startswith("| data=")]) == 4
    cli.report([str(p) for p in sorted(sweep_dir.iterdir())])  # the shell's DIR/*: multirun.yaml is ignored
    captured = capsys.readouterr()
    assert captured.out == out and "ignored" in captured.err and "multirun.yaml" in captured.err


def _mixture_results(tmp_path):
    results = []
    for data, shift in (("math10", 0.0), ("math40", 0.1), ("math70", 0.2)):
        for optim, gain in (("adamw", 0.0), ("nexus(adamw)", 0.05)):
            results.append(make_result(optim, 2.0 + shift, 2.5 + shift - gain, [], [], model="tiny", data=data,
                                       run_dir=None))
    for r in results:  # held-out losses only: what a tiny run evaluated without benchmarks has
        r["metrics"]["accuracy"], r["metrics"]["loss"] = {}, {}
    return results


def test_mixtures_are_groups_not_seeds(tmp_path):
    """Before: one row per optimizer, averaging math10/40/70 as if they were seeds."""
    results = _mixture_results(tmp_path)
    table = build_table(default_layout(results), results)
    labelled = [(r[0].text, r[1].text, r[2].text, r[3].text, r[4].text) for r in table.rows if r[1].text]
    assert labelled == [("data=math10", "adamw", "Loss (↓)", "2.000", "2.500"), ("", "nexus(adamw)", "Loss (↓)", "2.000", "2.450"),
                        ("", "Improv.", "Loss (↑)", "0.000", "+0.050"),
                        ("data=math40", "adamw", "Loss (↓)", "2.100", "2.600"), ("", "nexus(adamw)", "Loss (↓)", "2.100", "2.550"),
                        ("", "Improv.", "Loss (↑)", "0.000", "+0.050"),
                        ("data=math70", "adamw", "Loss (↓)", "2.200", "2.700"), ("", "nexus(adamw)", "Loss (↓)", "2.200", "2.650"),
                        ("", "Improv.", "Loss (↑)", "0.000", "+0.050")]
    assert table.header == ["Swept", "Optim.", "Metric", "Pretrain.", "OOD"]  # no benchmark was scored
    assert table.layout.title == "Results of tiny models"
    assert any("no result has MMLU, GPQA" in w for w in table.warnings)


def test_a_paper_layout_over_other_runs_warns_and_takes_its_title_from_the_data(tmp_path, capsys):
    """Before: the tiny Table 7 was all dashes without a word, titled '3B models'."""
    files = [write_results(r, tmp_path / f"{i}.json") for i, r in enumerate(_mixture_results(tmp_path))]
    table7 = REPO_ROOT / "eval" / "tables" / "table7.yaml"
    cli.report([*map(str, files), "--table", str(table7)])
    captured = capsys.readouterr()
    assert "**Table 7: Results on varying data mixtures (? models)**" in captured.out
    assert "nexus-report: table7: row Math10/AdamW matches no result: no result has model=llama_3b (they have tiny)" \
        in captured.err
    cli.report([*map(str, files), "--table", str(table7), "--match", "model=tiny"])
    captured = capsys.readouterr()
    assert "**Table 7: Results on varying data mixtures (tiny models)**" in captured.out
    assert "| Math40 | AdamW | Loss (↓) | 2.100 | 2.600 |" in captured.out and "matches no result" not in captured.err
    layout = with_match(load_layout(table7), ["model=llama_3b"])
    sized = [dict(r, model="llama_3b") for r in _mixture_results(tmp_path)]
    assert build_table(layout, sized).layout.title == "Table 7: Results on varying data mixtures (3B models)"
    with pytest.raises(SystemExit, match="--match model: write FIELD=VALUE"):
        cli.report([*map(str, files), "--table", str(table7), "--match", "model"])


def test_runs_that_differ_only_in_their_seed_are_one_row_named_by_their_directories(sweep_dir):
    from nexus_pretrain.report.sweep import run_labels

    seeds = [sweep_dir / "0", sweep_dir / "1"]  # data=math10 optim=adamw, seeds 0 and 1
    assert run_labels(seeds) == ["0, 1", "0, 1"]
    assert run_labels([sweep_dir / "2"]) == ["2"]  # one run: its directory, not its whole command line


def test_runs_launched_alike_whose_configs_differ_are_not_averaged(sweep_dir, capsys):
    """model.float8=auto trains in FP8 on one GPU and in bf16 on another; the runs record which, and the
    report keeps them apart instead of averaging them as seeds of one configuration."""
    from nexus_pretrain.report.sweep import run_labels

    for job, float8 in (("0", "true"), ("1", "false")):  # data=math10 optim=adamw, seeds 0 and 1
        config = yaml.safe_load((sweep_dir / job / "config.yaml").read_text())
        config["model"]["float8"] = float8
        (sweep_dir / job / "config.yaml").write_text(yaml.safe_dump(config))
    assert run_labels([sweep_dir / "0", sweep_dir / "1"]) == ["model.float8=true", "model.float8=false"]
    labels = run_labels(sorted(p for p in sweep_dir.iterdir() if p.is_dir()))
    assert labels[:2] == ["data=math10 optim=adamw model.float8=true", "data=math10 optim=adamw model.float8=false"]
    assert labels[2] == labels[3] == "data=math10 optim=nexus"  # seeds of one configuration: still one row
    cli.report([str(sweep_dir)])
    out = capsys.readouterr().out
    assert "| data=math10 optim=adamw model.float8=true | adamw | 4 | 1 | 2.0000 |" in out
    assert len([line for line in out.splitlines() if line.startswith("| data=")]) == 5


def test_results_of_runs_launched_alike_whose_configs_differ_are_separate_rows(sweep_dir):
    """The results table (nexus-eval's documents) keeps FP8 and bf16 runs of one command line apart too."""
    results = []
    for job, float8, seed in (("0", "true", 0), ("1", "false", 1)):  # data=math10 optim=adamw
        result = make_result("adamw", 2.0 + seed, 2.5, [], [], seed=seed, run_dir=str(sweep_dir / job))
        result["config"]["model"] = {"float8": float8}
        result["metrics"]["accuracy"], result["metrics"]["loss"] = {}, {}
        results.append(result)
    groups = default_layout(results).groups
    assert [g.label for g in groups] == ["model.float8=true", "model.float8=false"]
    table = build_table(default_layout(results), results)
    assert [r[3].text for r in table.rows if r[1].text == "adamw"] == ["2.000", "3.000"]  # not averaged: 2.500
