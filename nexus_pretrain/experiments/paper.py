"""The paper's numbers, stored in the ``paper:`` section of eval/tables/tableN.yaml.

Cells are keyed as in nexus_pretrain.report.tables: ("loss", "Pretrain"), ("loss", "OOD"),
("acc", column) and ("loss", column) for column in BENCH_COLUMNS; the paper's printed improvement rows
are kept as ("improv_acc", column) and ("improv_loss", column-or-Pretrain/OOD).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import yaml

from nexus_pretrain.report.tables import BENCH_COLUMNS

Key = Tuple[str, str]
PaperRows = Dict[Tuple[str, str], Dict[Key, Optional[float]]]


def load_paper(layout_path: Path) -> PaperRows:
    """{(group label, row label): {cell key: value}} from a layout's ``paper:`` section ({} if none)."""
    raw = yaml.safe_load(Path(layout_path).read_text()) or {}
    paper = raw.get("paper")
    if not paper:
        return {}
    out: PaperRows = {}
    for group in paper["groups"]:
        for row in group["rows"]:
            cells: Dict[Key, Optional[float]] = {("loss", "Pretrain"): row["pretrain"], ("loss", "OOD"): row["ood"]}
            for kind in ("acc", "loss"):
                values = row[kind]
                if len(values) != len(BENCH_COLUMNS):
                    raise ValueError(f"{layout_path}: {group['label']}/{row['label']} {kind} has {len(values)} "
                                     f"values, expected {len(BENCH_COLUMNS)}")
                cells.update({(kind, c): v for c, v in zip(BENCH_COLUMNS, values)})
            if "improv_acc" in row:
                cells.update({("improv_acc", c): v for c, v in zip(BENCH_COLUMNS, row["improv_acc"])})
            if "improv_loss" in row:
                cells.update({("improv_loss", c): v
                              for c, v in zip(("Pretrain", "OOD", *BENCH_COLUMNS), row["improv_loss"])})
            out[(str(group["label"]), str(row["label"]))] = cells
    return out


def paper_source(layout_path: Path) -> str:
    """Where the numbers come from (table and section), as written in the file."""
    raw = yaml.safe_load(Path(layout_path).read_text()) or {}
    return str((raw.get("paper") or {}).get("source", ""))
