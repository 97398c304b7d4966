"""Paper tables: improvement rows, the bolding rule, seeds (mean ± std, Welch CI of unpaired runs) and the
three formats."""

import csv
import io
import math

import pytest

from nexus_pretrain.paths import REPO_ROOT
from nexus_pretrain.report.stats import Summary, mean_ci, summarize, t975, welch_ci
from nexus_pretrain.report.render import to_csv, to_latex, to_markdown
from nexus_pretrain.report.tables import BENCH_COLUMNS, build_table, default_layout, load_layout

from .results_factory import ADAMW_1B, NEXUS_1B, make_result

TABLES = REPO_ROOT / "eval" / "tables"


def _row(table, optim_label, metric_prefix):
    """Value cells of the first row whose Optim. label (written on a row's first metric line) and Metric match."""
    current = None
    for row in table.rows:
        current = row[1].text or current
        if current == optim_label and row[2].text.startswith(metric_prefix):
            return dict(zip(table.header[3:], row[3:]))
    raise AssertionError(f"no row {optim_label} {metric_prefix}")


def test_paper_table1_1b_block_improvements_and_bolding():
    table = build_table(load_layout(TABLES / "table1.yaml"), [ADAMW_1B, NEXUS_1B])
    acc = _row(table, "Improv.", "Acc.")
    loss = next(dict(zip(table.header[3:], r[3:])) for r in table.rows if r[2].text.startswith("Loss (↑)"))
    # numbers as printed in the paper's Improv. rows
    assert [acc[c].text for c in ("MMLU", "GPQA", "GPQA-D", "BBH", "GSM8k", "MBPP")] == \
        ["+1.4", "+5.4", "0.0", "-0.3", "+2.0", "+5.0"]
    assert [loss[c].text for c in ("Pretrain.", "OOD", "MMLU", "GPQA", "BBH", "MBPP", "All")] == \
        ["0.000", "+0.005", "+0.047", "+0.020", "+0.002", "+0.058", "+0.027"]
    # bold: accuracy gain > 2 points, loss gain > 0.01 (strict: +2.0 on GSM8k is not bold)
    assert {c for c, cell in acc.items() if cell.bold} == {"GPQA", "MBPP"}
    assert {c for c, cell in loss.items() if cell.bold} == {"MMLU", "GPQA", "GPQA-D", "GSM8k", "MATH", "MBPP", "All"}
    nexus_acc = _row(table, "Nexus", "Acc.")
    assert nexus_acc["GPQA"].bold and not nexus_acc["MMLU"].bold and not nexus_acc["OOD"].bold
    assert _row(table, "AdamW", "Loss (↓)")["Pretrain."].text == "1.826"
    # the 3B block has no results: dashes, not errors
    block = next(i for i, r in enumerate(table.rows) if r[0].text == "3B")
    assert table.rows[block + 1][2].text == "Loss (↓)" and table.rows[block + 1][3].text == "—"
    assert "table1: row 3B/AdamW matches no result: no result has model=llama_3b (they have llama_520m)" in \
        table.warnings


def test_threshold_is_strict_and_regressions_are_not_bold():
    base = make_result("adamw", 2.0, 2.0, [20.0] * 8, [1.5] * 8)
    run = make_result("nexus(adamw)", 1.99, 2.02, [22.0, 22.5, 17.0, 20, 20, 20, 20, 20], [1.49, 1.4, 1.6, 1.5, 1.5, 1.5, 1.5, 1.5])
    table = build_table(default_layout([base, run]), [base, run])
    acc = _row(table, "Improv.", "Acc.")
    loss = next(dict(zip(table.header[3:], r[3:])) for r in table.rows if r[2].text.startswith("Loss (↑)"))
    assert (acc["MMLU"].text, acc["MMLU"].bold) == ("+2.0", False)  # exactly 2 points
    assert (acc["GPQA"].text, acc["GPQA"].bold) == ("+2.5", True)
    assert (acc["GPQA-D"].text, acc["GPQA-D"].bold) == ("-3.0", False)
    assert (loss["Pretrain."].text, loss["Pretrain."].bold) == ("+0.010", False)  # exactly 0.01
    assert (loss["MMLU"].text, loss["MMLU"].bold) == ("+0.010", False)
    assert (loss["GPQA"].text, loss["GPQA"].bold) == ("+0.100", True)
    assert (loss["OOD"].text, loss["OOD"].bold) == ("-0.020", False)


def test_t_quantiles_and_welch_interval():
    # printed tables of Student's t
    for df, t in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042), (1000, 1.962)):
        assert t975(df) == pytest.approx(t, abs=1e-3)
    s = summarize([2.00, 2.02, 2.04])
    assert (s.mean, s.n) == (pytest.approx(2.02), 3) and s.std == pytest.approx(0.02)
    # equal n and variances: Welch df = 2(n-1) = 4
    lo, hi = welch_ci(Summary(2.02, 0.02, 3), Summary(1.97, 0.02, 3))
    half = 2.7764451 * math.sqrt(2 * 0.02 ** 2 / 3)
    assert (lo, hi) == (pytest.approx(0.05 - half), pytest.approx(0.05 + half))
    assert welch_ci(Summary(1.0, 0.0, 1), Summary(1.0, 0.1, 3)) is None
    with pytest.raises(ValueError):
        t975(0.5)


def test_t_quantiles_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 1.5, 2, 2.5, 3, 5, 7.3, 12, 29, 31, 45, 200):
        assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-5)


def test_seeds_show_mean_std_and_bold_only_when_the_ci_excludes_zero():
    base_losses = [[2.00, 2.00, 2.00, 2.00, 2, 2, 2, 2], [2.02] * 8, [2.04] * 8]
    runs = [make_result("adamw", 1.80 + 0.01 * i, 1.5, [20.0 + i] * 8, base_losses[i], seed=i) for i in range(3)]
    # MMLU: 0.05 better with the same spread -> significant; GPQA: 0.02 better but noisy -> not significant.
    # Seeds 10-12 share no seed with the baseline's 0-2: unpaired runs, so Welch's interval (the paired
    # case is tests/report/test_significance.py).
    nexus_losses = [[1.95, 1.90] + [2.0] * 6, [1.97, 2.00] + [2.02] * 6, [1.99, 2.10] + [2.04] * 6]
    runs += [make_result("nexus(adamw)", 1.80 + 0.01 * i, 1.5, [23.0 + i] * 8, nexus_losses[i], seed=10 + i)
             for i in range(3)]
    table = build_table(default_layout(runs, baseline="adamw"), runs)
    assert table.notes == ["± on an improvement: half-width of its 95% CI, Welch (unpaired)."]
    assert _row(table, "adamw", "Loss (↓)")["Pretrain."].text == "1.810 ± 0.010"
    assert _row(table, "adamw", "Acc.")["MMLU"].text == "21.0 ± 1.0"
    loss = next(dict(zip(table.header[3:], r[3:])) for r in table.rows if r[2].text.startswith("Loss (↑)"))
    half = 2.776 * math.sqrt(2 * 0.02 ** 2 / 3)
    assert loss["MMLU"].text == f"+0.050 ± {half:.3f}" and loss["MMLU"].bold
    assert loss["GPQA"].text.startswith("+0.020 ± ") and not loss["GPQA"].bold
    acc = _row(table, "Improv.", "Acc.")
    assert acc["MMLU"].text == "+3.0 ± 2.3" and acc["MMLU"].bold  # df 4: 2.776 * sqrt(2/3)


def test_formats(tmp_path):
    table = build_table(load_layout(TABLES / "table1.yaml"), [ADAMW_1B, NEXUS_1B])
    md = to_markdown(table)
    assert "| Model | Optim. | Metric | Pretrain. | OOD | MMLU |" in md and "**+5.4**" in md
    tex = to_latex(table)
    assert "\\textbf{+5.4}" in tex and "\\toprule" in tex and "$\\uparrow$" in tex
    rows = list(csv.reader(io.StringIO(to_csv(table))))
    assert rows[0][3:] == ["Pretrain.", "OOD", *BENCH_COLUMNS]
    assert len(rows) == 1 + len(table.rows) and "+5.4" in rows[5]


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "table7", "table8", "table9", "table10", "table11"])
def test_every_paper_layout_loads_and_renders(name):
    layout = load_layout(TABLES / f"{name}.yaml")
    table = build_table(layout, [ADAMW_1B, NEXUS_1B])
    assert to_markdown(table).count("\n") > 4


def test_table10_compares_two_optimizers_with_adamw():
    adamw = make_result("adamw", 1.606, 1.302, [47.8] * 8, [2.0] * 8, model="llama_3b")
    nexus = make_result("nexus(adamw)", 1.602, 1.290, [48.9] * 8, [1.9] * 8, model="llama_3b")
    muon = make_result("muon", 1.577, 1.285, [49.8] * 8, [1.95] * 8, model="llama_3b")
    table = build_table(load_layout(TABLES / "table10.yaml"), [adamw, nexus, muon])
    labels = [r[1].text for r in table.rows]
    assert labels == ["AdamW", "", "Adam+Nexus", "", "(- AdamW)", "", "Muon", "", "(- AdamW)", ""]


def test_bad_layout_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("groups:\n  - label: x\n    rows:\n      - {label: a, match: {optimizer: adamw}}\n")
    with pytest.raises(ValueError, match="baseline"):
        load_layout(path)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_layout(tmp_path / "nope.yaml")


def test_checkpoints_of_one_run_are_not_seeds():
    early = make_result("adamw", 2.5, 2.0, [10.0] * 8, [2.0] * 8, step=100, run_dir="/runs/a")
    late = make_result("adamw", 2.0, 2.0, [20.0] * 8, [1.5] * 8, step=200, run_dir="/runs/a")
    table = build_table(default_layout([early, late]), [late, early])
    assert _row(table, "adamw", "Loss (↓)")["Pretrain."].text == "2.000"


def test_mean_ci_is_the_t_interval_of_the_mean():
    half = t975(3) * 0.2 / 2.0
    assert mean_ci(Summary(1.0, 0.2, 4)) == (pytest.approx(1.0 - half), pytest.approx(1.0 + half))
    assert mean_ci(Summary(1.0, 0.0, 1)) is None and mean_ci(None) is None
