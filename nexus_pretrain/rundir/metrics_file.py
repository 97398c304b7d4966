"""metrics.jsonl: one JSON object per line, each with its ``step``; its reader and its truncation on resume.

A crash can leave the last line torn, which readers skip. A resumed run first truncates the file to its
checkpoint's step (:func:`truncate_metrics`), so every step appears once; files written before that rule
may repeat the steps between a checkpoint and a crash, and :func:`read_metrics` keeps the later rows.
No torch here: reports read metrics without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

from nexus_pretrain.errors import write_failed

METRICS_FILE = "metrics.jsonl"


def _parse_lines(path: Path) -> Tuple[List[Tuple[int, str, Dict[str, Any]]], List[Tuple[int, str]]]:
    """(line number, text, record) of every record line, and (line number, problem) of every other
    non-blank line; a torn last line (no newline, not a record) is neither."""
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    rows, bad = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
                raise ValueError("not a JSON object with a step")
        except ValueError as error:
            if number < len(lines):  # else the last line, without newline: a write cut short by a crash
                bad.append((number, f"{type(error).__name__}: {error}"))
            continue
        rows.append((number, line, record))
    return rows, bad


def _latest_segment(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Rows that log a step again (a resumed run that had logged past its checkpoint) replace the
    earlier rows from that step on."""
    out: List[Dict[str, Any]] = []
    for row in rows:
        step, keys = row["step"], set(row) - {"step"}
        if out and (step < out[-1]["step"] or step == out[-1]["step"] and _logged_at(out, step) & keys):
            out = [r for r in out if r["step"] < step]
        out.append(row)
    return out


def _logged_at(rows: List[Dict[str, Any]], step: float) -> set:
    """Metric names of the trailing rows at ``step`` (rows are in step order)."""
    names: set = set()
    for row in reversed(rows):
        if row["step"] != step:
            break
        names |= set(row) - {"step"}
    return names


def read_metrics(path: str | Path) -> List[Dict[str, Any]]:
    """The records of a metrics.jsonl (a file, or a run directory holding one), in order, each step once;
    ValueError naming the file and line of a line that is not a record."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; is {path.parent} a nexus-train run directory?")
    rows, bad = _parse_lines(path)
    if bad:
        number, problem = bad[0]
        raise ValueError(f"{path}:{number}: not a metrics record ({problem}); repair or delete that line")
    return _latest_segment([record for _, _, record in rows])


def final_metrics(run_dir: str | Path) -> Dict[str, float]:
    """The last value of every metric a run logged."""
    merged: Dict[str, float] = {}
    for record in read_metrics(Path(run_dir) / METRICS_FILE):
        merged.update(record)
    return merged


def records_by_step(run_dir: str | Path) -> Dict[float, Dict[str, Any]]:
    """Every logged step's records merged into one (a step's training and evaluation rows), in step order."""
    merged: Dict[float, Dict[str, Any]] = {}
    for record in read_metrics(run_dir):
        merged.setdefault(record["step"], {}).update(record)
    return merged


def truncate_metrics(path: str | Path, step: int) -> Tuple[int, List[int]]:
    """Drop the records after ``step``, unreadable lines and a torn last line from a metrics.jsonl,
    atomically, as a run resumed at ``step`` does; (records dropped, numbers of the unreadable lines)."""
    path = Path(path)
    if not path.is_file():
        return 0, []
    rows, bad = _parse_lines(path)
    kept = [line for _, line, record in rows if record["step"] <= step]
    data = path.read_bytes()
    if len(kept) == len(rows) and not bad and (not data or data.endswith(b"\n")):
        return 0, []
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.writelines(line + "\n" for line in kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise write_failed("metrics to", path, error, "it is unchanged; free space (or fix the directory) and "
                           "resume again") from error
    return len(rows) - len(kept), [number for number, _ in bad]
