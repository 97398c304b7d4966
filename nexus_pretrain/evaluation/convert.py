"""Bring public releases whose layout differs from the one our task YAMLs read into that layout.

- MMLU's original release (data/{test,dev}/<subject>_{test,dev}.csv; no header; question, A, B, C, D,
  answer letter) -> mmlu/test.jsonl and mmlu/dev.jsonl in the cais/mmlu "all" layout.
- BBH's original release (bbh/<subtask>.json holding {"examples": [{input, target}, ...]}) ->
  bbh/<subtask>.jsonl.

Usage: ``python -m nexus_pretrain.evaluation.convert mmlu SRC DATA_DIR`` (SRC holds test/ and dev/)
or ``... bbh SRC DATA_DIR`` (SRC holds the <subtask>.json files).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import List

from nexus_pretrain.console import show


def mmlu_from_csv(src: Path, data_dir: Path) -> List[Path]:
    """Write DATA_DIR/mmlu/{test,dev}.jsonl from the original per-subject csv files under SRC/{test,dev}."""
    out = []
    for split in ("test", "dev"):
        files = sorted((Path(src) / split).glob(f"*_{split}.csv"))
        if not files:
            raise FileNotFoundError(f"{Path(src) / split}: no *_{split}.csv files (MMLU's original release layout)")
        rows = []
        for path in files:
            subject = path.name[: -len(f"_{split}.csv")]
            with open(path, newline="", encoding="utf-8") as f:
                for i, rec in enumerate(csv.reader(f)):
                    if len(rec) != 6 or rec[5] not in ("A", "B", "C", "D"):
                        raise ValueError(f"{path}: line {i + 1} is not question,A,B,C,D,answer-letter")
                    rows.append({"question": rec[0], "subject": subject, "choices": rec[1:5],
                                 "answer": "ABCD".index(rec[5])})
        target = Path(data_dir) / "mmlu" / f"{split}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        out.append(target)
    return out


def bbh_from_json(src: Path, data_dir: Path) -> List[Path]:
    """Write DATA_DIR/bbh/<subtask>.jsonl from the original SRC/<subtask>.json files."""
    files = sorted(Path(src).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"{src}: no <subtask>.json files (BBH's original release layout)")
    out = []
    for path in files:
        examples = json.loads(path.read_text(encoding="utf-8")).get("examples")
        if not isinstance(examples, list):
            raise ValueError(f"{path}: no 'examples' list")
        target = Path(data_dir) / "bbh" / f"{path.stem}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps({"input": e["input"], "target": e["target"]}, ensure_ascii=False) + "\n"
                                  for e in examples), encoding="utf-8")
        out.append(target)
    return out


CONVERTERS = {"mmlu": mmlu_from_csv, "bbh": bbh_from_json}


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in CONVERTERS:
        sys.exit(f"usage: python -m nexus_pretrain.evaluation.convert {{{','.join(CONVERTERS)}}} SRC DATA_DIR")
    for written in CONVERTERS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3])):
        show(f"wrote {written}")
