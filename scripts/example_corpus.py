#!/usr/bin/env python3
"""Stand-in files for trying `nexus-data prepare DOMAIN=FILES` before you have your own (docs/own-data.md).

Writes the shipped corpus out in the three formats prepare reads, as a user's files would be:

    OUT/manuals.jsonl        web prose, one {"text": ...} per line
    OUT/code/part-0.parquet  source files, a "text" column (and part-1, part-2)
    OUT/licences/*.txt       licence texts, one document per file

``python scripts/example_corpus.py OUT [--documents N]`` (N per domain, default 200).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nexus_pretrain.data.embedded import load_documents


def write_corpus(out: Path, documents: int = 200) -> None:
    """The three example domains under ``out`` (module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "manuals.jsonl", "w", encoding="utf-8") as file:
        for text in load_documents("web")[:documents]:
            file.write(json.dumps({"text": text}) + "\n")
    code = load_documents("code")[:documents]
    (out / "code").mkdir(exist_ok=True)
    for part in range(3):
        pq.write_table(pa.table({"text": code[part::3]}), out / "code" / f"part-{part}.parquet")
    (out / "licences").mkdir(exist_ok=True)
    for i, text in enumerate(load_documents("legal")[:documents]):
        (out / "licences" / f"{i:04d}.txt").write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the example files to")
    parser.add_argument("--documents", type=int, default=200, help="documents per domain")
    args = parser.parse_args()
    write_corpus(args.out, args.documents)
    print(f"wrote {args.out}/manuals.jsonl, {args.out}/code/*.parquet and {args.out}/licences/*.txt")


if __name__ == "__main__":
    main()
