"""nexus_pretrain.experiments.compare on hand-made results documents (no training)."""

from pathlib import Path

import pytest

from nexus_pretrain.experiments import compare
from nexus_pretrain.experiments.paper import load_paper
from nexus_pretrain.experiments.registry import TABLES
from nexus_pretrain.experiments.runner import PlannedRun
from nexus_pretrain.report.stats import INCONCLUSIVE, NOT_SAME, SAME


def _runs_and_results(pretrain):
    """Table 1's 1B group with seeds 0..2: AdamW and Nexus results with the given pretrain losses."""
    spec = TABLES["table1"]
    runs, results = [], {}
    for row in spec.rows[:2]:
        for seed, loss in enumerate(pretrain[row.row]):
            run = PlannedRun(row, [], seed, Path(f"/x/{row.row}/seed{seed}"))
            runs.append(run)
            results[str(run.run_dir)] = {"run_dir": str(run.run_dir), "step": 10,
                                         "metrics": {"pretrain": loss, "ood": loss + 0.1, "accuracy": {}, "loss": {}}}
    return spec, runs, results


def test_seed_statistics_and_same_loss_check():
    spec, runs, results = _runs_and_results({"AdamW": [2.00, 2.02, 2.04], "Nexus": [1.99, 2.02, 2.05]})
    stats = compare.seed_stats(spec, runs, results, load_paper(spec.layout_path))
    pre = next(s for s in stats if s.key == ("loss", "Pretrain"))
    assert pre.values == pytest.approx([0.01, 0.0, -0.01])
    assert pre.summary.mean == pytest.approx(0.0) and pre.summary.std == pytest.approx(0.01)
    lo, hi = pre.ci
    assert hi == pytest.approx(4.302653 * 0.01 / 3 ** 0.5, abs=1e-5) and lo == pytest.approx(-hi)
    (check,) = compare.same_loss_checks(stats)
    # mean gap 0, but the paired 95% CI (±0.025) exceeds ±0.01: not shown to be the same
    assert check["verdict"] == INCONCLUSIVE and not check["same"] and check["seeds"] == 3
    assert check["ci95"] == pytest.approx(pre.ci) and check["paper_delta"] == pytest.approx(0.0)
    assert check["paper_verdict"] == SAME and check["paper_same"]
    close = compare.same_loss_checks(compare.seed_stats(spec, *_runs_and_results(
        {"AdamW": [2.00, 2.02, 2.04], "Nexus": [1.999, 2.018, 2.039]})[1:], {}))
    assert close[0]["verdict"] == SAME
    md = compare.paper_comparison_markdown(spec, runs, results, load_paper(spec.layout_path))
    assert "| 1B | AdamW | Loss Pretrain | 2.020 ± 0.020 | 1.826 | +0.194 |" in md


def test_different_pretraining_loss_is_flagged():
    spec, runs, results = _runs_and_results({"AdamW": [2.00], "Nexus": [2.05]})
    (check,) = compare.same_loss_checks(compare.seed_stats(spec, runs, results, {}))
    assert not check["same"] and check["delta"] == pytest.approx(-0.05) and check["paper_delta"] is None
    assert check["verdict"] == NOT_SAME and "| 1B | Nexus - AdamW | -0.0500 | — | not the same pretraining loss |" in \
        compare.same_loss_markdown([check])


def test_our_table_uses_the_layout_labels_and_only_our_runs():
    spec, runs, results = _runs_and_results({"AdamW": [2.0, 2.1], "Nexus": [2.0, 2.1]})
    table = compare.our_table(spec, runs, results)
    # losses only (no benchmark scored): no accuracy rows and no benchmark columns
    assert [(r[1].text, r[2].text) for r in table.rows if r[1].text] == \
        [("AdamW", "Loss (↓)"), ("Nexus", "Loss (↓)"), ("Improv.", "Loss (↑)")]
    assert table.header[3:] == ["Pretrain.", "OOD"] and table.rows[0][3].text == "2.050 ± 0.071"


def test_paper_values_are_listed_where_we_have_none():
    spec, runs, results = _runs_and_results({"AdamW": [2.0], "Nexus": [2.0]})
    md = compare.paper_comparison_markdown(spec, runs, results, load_paper(spec.layout_path))
    assert "| 1B | Nexus | Acc. MBPP | — | 22.0 | — |" in md
    assert "| 1B | Nexus | Loss Pretrain | 2.000 | 1.826 | +0.174 |" in md
