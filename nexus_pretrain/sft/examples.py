"""Instruction examples as conversations, from a hub dataset, local files or the embedded math generator.

Everything is read with the ``datasets`` library (``load_dataset`` for the hub and for local
json/jsonl/parquet files, ``Dataset.from_list`` for the generated set), so a hub dataset and a local file
shaped like it load the same way.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, List, Optional

from nexus_pretrain.data.embedded_math import TEMPLATES
from nexus_pretrain.data.embedded_math.numbers import fmt

EMBEDDED_MATH = "embedded_math"
EMBEDDED_MATH_COUNT = 2400
EMBEDDED_MATH_SEED = 1105  # differs from the pretraining corpus's seed: other numbers, same templates
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def embedded_math_rows(count: int = EMBEDDED_MATH_COUNT, seed: int = EMBEDDED_MATH_SEED) -> List[Dict[str, str]]:
    """Prompt/response pairs from the embedded math templates: the question, then the worked solution."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        exercise = rng.choice(TEMPLATES)(rng)
        answer = exercise.answer_text or fmt(exercise.answer)
        rows.append({"prompt": exercise.question, "response": "\n".join((*exercise.steps, f"The answer is {answer}."))})
    return rows


def _local_files(path: Path) -> Dict[str, Any]:
    """load_dataset arguments for a local file or a folder of files of one format."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in LOCAL_FORMATS)
    formats = {LOCAL_FORMATS.get(p.suffix) for p in files}
    if not files or None in formats or len(formats) != 1:
        raise ValueError(f"data.sft.dataset={str(path)!r}: expected a .jsonl/.json/.parquet file or a folder of "
                         "files of one of these formats")
    return {"path": formats.pop(), "data_files": [str(p) for p in files]}


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).suffix in LOCAL_FORMATS


def load_rows(dataset: str, split: str, subset: Optional[str] = None):
    """A ``datasets.Dataset`` of one split: local files (one split, called train), the generated set
    (split train; other splits are empty), or a hub dataset."""
    import datasets  # heavy: datasets, only for hub datasets

    if dataset == EMBEDDED_MATH:
        return datasets.Dataset.from_list(embedded_math_rows() if split == "train" else [])
    path = Path(dataset).expanduser()
    if path.exists():
        if split != "train":
            raise ValueError(f"data.sft.val_split={split!r}: local files have one split; leave data.sft.val_split "
                             "unset to hold out data.val_fraction of them")
        spec = _local_files(path)
        if all(Path(f).stat().st_size == 0 for f in spec["data_files"]):
            raise ValueError(f"data.sft.dataset={dataset!r} has no examples (empty file)")
        try:
            return datasets.load_dataset(**spec, split="train")
        except Exception as error:  # datasets wraps parse errors of many kinds; report the first line
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(f"data.sft.dataset={dataset!r}: cannot read ({first})") from None
    if _looks_local(dataset):
        raise ValueError(f"data.sft.dataset={dataset!r} not found; give an existing file or a hub dataset name")
    try:
        return datasets.load_dataset(dataset, subset, split=split)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        raise ValueError(f"data.sft.dataset={dataset!r} split {split!r}: {str(error).splitlines()[0]}") from None


def to_messages(row: Dict[str, Any], messages_field: str, prompt_field: str, response_field: str,
                system_prompt: Optional[str] = None) -> List[Dict[str, str]]:
    """A row as chat messages: its messages column, or user prompt + assistant response (system prompt first)."""
    if messages_field in row and row[messages_field] is not None:
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row[messages_field]]
    else:
        messages = [{"role": "user", "content": str(row[prompt_field])},
                    {"role": "assistant", "content": str(row[response_field])}]
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def check_columns(columns: List[str], messages_field: str, prompt_field: str, response_field: str, where: str) -> None:
    """Raise a one-line ValueError unless the dataset has the messages column or both prompt and response."""
    if messages_field in columns or {prompt_field, response_field} <= set(columns):
        return
    raise ValueError(f"{where}: no {messages_field!r} column and not both {prompt_field!r} and {response_field!r} "
                     f"(columns: {', '.join(columns) or 'none'}); set data.sft.messages_field or "
                     "data.sft.prompt_field/response_field")
