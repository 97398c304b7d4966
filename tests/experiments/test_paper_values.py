"""The paper's numbers in eval/tables/tableN.yaml: shape, consistency with the printed improvements, and
the rows that the paper repeats across tables (the 3B and 1B main runs)."""

import pytest

from nexus_pretrain.experiments.paper import load_paper, paper_source
from nexus_pretrain.experiments.registry import TABLES
from nexus_pretrain.report.tables import BENCH_COLUMNS, load_layout

EXPECTED_ROWS = {"table1": 4, "table2": 4, "table3": 4, "table7": 6, "table8": 4, "table9": 10, "table10": 3}


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_paper_values_load_with_the_layouts_shape(name):
    spec = TABLES[name]
    paper = load_paper(spec.layout_path)
    assert len(paper) == EXPECTED_ROWS[name]
    assert paper_source(spec.layout_path).startswith(f"Table {name[5:]},")
    layout = load_layout(spec.layout_path)  # the paper: section leaves the layout loadable
    layout_rows = [(g.label, r.label) for g in layout.groups for r in g.rows]
    assert set(paper) <= set(layout_rows)
    assert set(layout_rows) == set(paper)
    for cells in paper.values():
        assert all(cells[("acc", c)] is not None and cells[("loss", c)] is not None for c in BENCH_COLUMNS)
        assert 0.5 < cells[("loss", "Pretrain")] < 3 and 0.5 < cells[("loss", "OOD")] < 3


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_printed_improvements_agree_with_the_numbers(name):
    layout = load_layout(TABLES[name].layout_path)
    paper = load_paper(TABLES[name].layout_path)
    checked = 0
    for g in layout.groups:
        base = paper[(g.label, next(r.label for r in g.rows if r.baseline))]
        for r in g.rows:
            cells = paper.get((g.label, r.label))
            if cells is None or r.baseline:
                continue
            for (kind, col), printed in cells.items():
                if not kind.startswith("improv") or printed is None:
                    continue
                if kind == "improv_loss":
                    assert base[("loss", col)] - cells[("loss", col)] == pytest.approx(printed, abs=0.0011)
                else:
                    assert cells[("acc", col)] - base[("acc", col)] == pytest.approx(printed, abs=0.11)
                checked += 1
    assert checked >= 11


def test_rows_the_paper_repeats_are_identical():
    t = {n: load_paper(TABLES[n].layout_path) for n in EXPECTED_ROWS}
    for optim in ("AdamW", "Nexus"):
        main_3b = {k: v for k, v in t["table1"][("3B", optim)].items() if not k[0].startswith("improv")}
        for table, key in (("table2", ("2", optim)), ("table3", ("WSD", optim)), ("table7", ("Math10", optim)),
                           ("table9", ("2.3B", optim)), ("table10", ("", "Adam+Nexus" if optim == "Nexus" else optim))):
            assert {k: v for k, v in t[table][key].items() if k in main_3b} == main_3b, (table, key)
        main_1b = t["table1"][("1B", optim)]
        assert t["table9"][("520M", optim)] == main_1b
    assert t["table1"][("3B", "Nexus")][("acc", "GSM8k")] == 59.0
    assert t["table8"][("3B", "Nexus")][("acc", "MBPP")] == 38.0
