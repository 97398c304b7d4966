"""The reports' one significance rule (report.stats): paired over seeds when runs share seeds and batches,
Welch otherwise; a pretraining-loss gap above 0.01 is flagged, never bolded."""

import math

import pytest

from nexus_pretrain.report import stats
from nexus_pretrain.report.stats import (INCONCLUSIVE, NOT_SAME, SAME, paired_difference, pretraining_loss_verdict,
                                         significant_gain, t975, unpaired_difference)
from nexus_pretrain.report.render import to_latex, to_markdown
from nexus_pretrain.report.tables import batch_key, build_table, default_layout, paired_runs

from .results_factory import make_result


def _improvements(table):
    """{column: cell} of the first Improv. loss row and of its accuracy row."""
    loss = next(dict(zip(table.header[3:], r[3:])) for r in table.rows if r[2].text.startswith("Loss (↑)"))
    acc = next(dict(zip(table.header[3:], r[3:])) for r in table.rows if r[1].text == "Improv.")
    return loss, acc


def _seeded(optimizer, pretrain, mmlu_losses, mmlu_accs, seeds, data="math10"):
    return [make_result(optimizer, p, 1.5, [a] + [20.0] * 7, [m] + [2.0] * 7, seed=s, data=data)
            for p, m, a, s in zip(pretrain, mmlu_losses, mmlu_accs, seeds)]


def test_paired_runs_use_the_t_interval_of_per_seed_differences():
    # seed effects shared by both optimizers (2.00, 2.10, 2.20) cancel in the paired differences
    base = _seeded("adamw", [1.8] * 3, [2.00, 2.10, 2.20], [20.0, 25.0, 30.0], [0, 1, 2])
    run = _seeded("nexus(adamw)", [1.8] * 3, [1.97, 2.06, 2.17], [23.0, 27.0, 33.0], [0, 1, 2])
    assert paired_runs(run, base) is not None
    loss, acc = _improvements(build_table(default_layout(base + run, "adamw"), base + run))
    diffs = [0.03, 0.04, 0.03]
    half = t975(2) * math.sqrt(sum((d - 1 / 30) ** 2 for d in diffs) / 2) / math.sqrt(3)
    assert loss["MMLU"].text == f"+0.033 ± {half:.3f}" and loss["MMLU"].bold  # Welch: ± 0.24, not bold
    welch = unpaired_difference([2.00, 2.10, 2.20], [1.97, 2.06, 2.17])
    assert welch.ci[0] < 0 < welch.ci[1]
    assert acc["MMLU"].text == "+2.7 ± 1.4" and acc["MMLU"].bold  # diffs 3, 2, 3


def test_rows_are_paired_only_with_the_same_seeds_and_batches():
    base = _seeded("adamw", [1.8] * 2, [2.0, 2.1], [20.0, 20.0], [0, 1])
    assert paired_runs(_seeded("nexus(adamw)", [1.8] * 2, [2.0, 2.1], [20.0] * 2, [1, 0]), base) is not None
    assert paired_runs(_seeded("nexus(adamw)", [1.8] * 2, [2.0, 2.1], [20.0] * 2, [0, 2]), base) is None
    other_data = _seeded("nexus(adamw)", [1.8] * 2, [2.0, 2.1], [20.0] * 2, [0, 1], data="math70")
    assert batch_key(other_data[0]) != batch_key(base[0]) and paired_runs(other_data, base) is None
    no_seed = [dict(base[0], config={})]
    assert batch_key(no_seed[0]) is None and paired_runs(no_seed, base[:1]) is None
    assert paired_runs(base + base[:1], base) is None  # two results for one seed


def test_a_pretraining_loss_gap_is_flagged_never_bolded():
    base = _seeded("adamw", [2.00, 2.02, 2.04], [2.0] * 3, [20.0] * 3, [0, 1, 2])
    run = _seeded("nexus(adamw)", [1.95, 1.97, 1.99], [1.9] * 3, [20.0] * 3, [0, 1, 2])
    table = build_table(default_layout(base + run, "adamw"), base + run)
    loss, _ = _improvements(table)
    assert loss["Pretrain."].text == "+0.050 ± 0.000 †" and not loss["Pretrain."].bold
    assert not next(r for r in table.rows if r[1].text == "nexus(adamw)")[3].bold  # nor its value cell
    assert loss["MMLU"].bold  # other gains keep the rule, the note says they are not at the same loss
    assert any(n.startswith("† not the same pretraining loss") for n in table.notes)
    assert "† not the same pretraining loss" in to_markdown(table) and "not the same pretraining loss" in to_latex(table)
    same = _seeded("nexus(adamw)", [2.00, 2.03, 2.04], [1.9] * 3, [20.0] * 3, [0, 1, 2])
    table = build_table(default_layout(base + same, "adamw"), base + same)
    assert "†" not in _improvements(table)[0]["Pretrain."].text and len(table.notes) == 1


@pytest.mark.parametrize("diffs, want", [
    ([0.004], SAME), ([0.011], NOT_SAME), ([-0.02], NOT_SAME), ([0.01], SAME),
    ([0.001, 0.002, 0.003], SAME), ([0.02, -0.01, -0.01], INCONCLUSIVE), ([-0.4, -0.1, -0.3], NOT_SAME)])
def test_pretraining_loss_verdict(diffs, want):
    assert pretraining_loss_verdict(paired_difference(diffs)) == want


def test_significant_gain_needs_the_threshold_and_a_ci_above_zero():
    assert significant_gain(paired_difference([0.02]), stats.LOSS_THRESHOLD)  # one run each: no interval
    assert not significant_gain(paired_difference([0.01]), stats.LOSS_THRESHOLD)  # strictly above
    assert significant_gain(paired_difference([0.05, 0.05, 0.06]), stats.LOSS_THRESHOLD)
    assert not significant_gain(paired_difference([0.15, -0.05, 0.05]), stats.LOSS_THRESHOLD)
    assert not significant_gain(None, stats.ACC_THRESHOLD)
    assert paired_difference([0.1, 0.2, 0.3]).method == "paired t over 3 seeds"
    assert unpaired_difference([1.0, 2.0], [1.0, 1.5]).method == "Welch (unpaired)"
    assert paired_difference([]) is None


@pytest.mark.parametrize("ci, want", [
    ((-0.06, -0.001), "candidate lower"), ((0.002, 0.05), "candidate higher"),
    ((-0.012, 0.014), "no difference beyond ±0.015"), ((-0.0636, 0.0004), "inconclusive"),
    ((-0.01, 0.02), "inconclusive"), (None, "inconclusive (no interval)")])
def test_matched_loss_verdict_reads_the_interval(ci, want):
    """The iso-loss experiment's rule: which side of 0 the 95% CI lies on, or within the equivalence margin."""
    assert stats.matched_loss_verdict(stats.Difference(0.0, ci, 6, True), 0.015) == want
