"""Which runs fill which row of which paper table.

Each table lists, per (group label, row label) of its layout in eval/tables/, the experiment file and
sweep point that trains it, and the ``nexus-eval --tag`` its results carry (the layouts tell runs apart
by tag where the config does not: ``chinchilla4`` for Table 2, ``public`` for Table 8, ``pre_sft`` /
``post_sft`` for Table 11, whose rows also name the pretraining run they fine-tune or score). Rows shared by
several tables (e.g. the 3B main runs) resolve to the same run directory, so they are trained once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from nexus_pretrain.paths import asset_dir

TABLES_DIR = asset_dir("eval/tables")


@dataclass(frozen=True)
class RowRun:
    """One table row: group and row label (as in the layout), experiment, sweep point and eval tag."""

    group: str
    row: str
    experiment: str
    point: Tuple[Tuple[str, str], ...]
    tag: Optional[str] = None
    extra: bool = False  # a row the paper's table (and its layout) lacks, appended to its group
    # Fine-tuning rows (Table 11): the (experiment, sweep point) of the pretraining run the row starts from,
    # the base checkpoint step to branch from (its final model when that checkpoint was not kept), and
    # whether the row only scores the base model on the row's data (pre-SFT) instead of fine-tuning it.
    base: Optional[Tuple[str, Tuple[Tuple[str, str], ...]]] = None
    init_step: Optional[int] = None
    evaluate_only: bool = False

    @property
    def overrides(self) -> List[str]:
        return [f"{k}={v}" for k, v in self.point]


@dataclass(frozen=True)
class TableSpec:
    name: str
    rows: Tuple[RowRun, ...] = field(default_factory=tuple)

    @property
    def layout_path(self) -> Path:
        return TABLES_DIR / f"{self.name}.yaml"

    def groups(self) -> List[str]:
        return list(dict.fromkeys(r.group for r in self.rows))


def _pair(group: str, experiment: str, extra: Dict[str, str] = None, tag: Optional[str] = None,
          labels: Tuple[str, str] = ("AdamW", "Nexus")) -> List[RowRun]:
    extra = extra or {}
    return [RowRun(group, label, experiment, tuple({"optim": optim, **extra}.items()), tag)
            for label, optim in zip(labels, ("adamw", "nexus"))]


SFT_BRANCH_STEP = 191_000
"""Step of the paper-scale cosine runs (experiment/schedule.yaml) that Table 11's SFT starts from: the
checkpoint where their LR has decayed to the SFT LR of 2e-5 (experiment/sft.yaml), as App. 14.6 does."""


def _sft_pair(group: str, tag: str, evaluate_only: bool) -> List[RowRun]:
    # App. 14.6: SFT branches off from the Sec. 4.6 (cosine, 3B) runs where their LR equals the SFT LR of 2e-5
    # (the paper's step 100,000; ours SFT_BRANCH_STEP); each checkpoint is fine-tuned with the optimizer it
    # was pretrained with (our reading; the paper does not say).
    return [RowRun(group, label, "sft", (("optim", optim),), tag,
                   base=("schedule", (("optim", optim), ("schedule", "cosine"))), init_step=SFT_BRANCH_STEP,
                   evaluate_only=evaluate_only)
            for label, optim in (("AdamW", "adamw"), ("Nexus", "nexus"))]


TABLES: Dict[str, TableSpec] = {
    "table1": TableSpec("table1", tuple(_pair("1B", "main_1b") + _pair("3B", "main_3b"))),
    "table2": TableSpec("table2", tuple(_pair("2", "main_3b") + _pair("4", "token_scaling_4x", tag="chinchilla4"))),
    "table3": TableSpec("table3", tuple(_pair("WSD", "schedule", {"schedule": "wsd"})
                                        + _pair("Cosine", "schedule", {"schedule": "cosine"}))),
    "table7": TableSpec("table7", tuple(sum((_pair(f"Math{p}", "mixture", {"data": f"math{p}"}) for p in (10, 40, 70)),
                                            []))),
    "table8": TableSpec("table8", tuple(_pair("1B", "public_1b", tag="public", labels=("Adam", "Nexus"))
                                        + _pair("3B", "public_3b", tag="public", labels=("Adam", "Nexus")))),
    "table9": TableSpec("table9", tuple(_pair("130M", "size_130m") + _pair("300M", "size_300m") + _pair("520M", "main_1b")
                                        + _pair("1.2B", "size_1_2b") + _pair("2.3B", "main_3b"))),
    "table10": TableSpec("table10", (
        RowRun("", "AdamW", "muon", (("optim", "adamw"),)),
        RowRun("", "Adam+Nexus", "muon", (("optim", "nexus"),)),
        RowRun("", "Muon", "muon", (("optim", "muon"),)),
        # not in the paper's Table 10 (Sec. 6, Limitations, only says it underperforms AdamW+Nexus downstream)
        RowRun("", "Muon+Nexus", "muon_nexus", (("optim", "nexus"),), extra=True),
    )),
    "table11": TableSpec("table11", tuple(_sft_pair("Pre-SFT", "pre_sft", evaluate_only=True)
                                          + _sft_pair("Post-SFT", "post_sft", evaluate_only=False))),
}


def table_spec(name: str) -> TableSpec:
    """The spec of 'table1', '1', 'Table1', ... (ValueError naming the choices otherwise)."""
    key = name.lower().replace("tab.", "table").replace(" ", "")
    key = key if key.startswith("table") else f"table{key}"
    if key not in TABLES:
        raise ValueError(f"unknown table {name!r}; choose one of {', '.join(TABLES)}")
    return TABLES[key]
