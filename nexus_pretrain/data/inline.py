"""Recipes from the command line: ``nexus-data prepare cooking=my/cooking.jsonl law=my/law/ --out DIR``.

Each ``DOMAIN=FILES`` names a domain of the user's choosing and its files: comma-separated files, folders
(every jsonl/json/parquet/txt file below them) or glob patterns, all of one format, told by the
extension (``.jsonl``/``.json``, ``.parquet``, ``.txt``; ``.gz`` allowed). It stands for a local recipe
(recipe.py) with the given text field, validation fraction and OOD flag, so nothing else needs a file.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from nexus_pretrain.data.recipe import Recipe, load_recipe

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}
SAMPLE_BY = ("document", "paragraph", "line")


def is_inline(source: Union[str, Path]) -> bool:
    """Whether a prepare source is ``DOMAIN=FILES`` rather than a recipe file."""
    name, eq, _ = str(source).partition("=")
    return bool(eq) and "/" not in name and not str(source).endswith((".yaml", ".yml"))


def file_format(path: Path) -> Optional[str]:
    """jsonl, parquet or txt from a file's extension (a trailing .gz ignored); None for other files."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None


def _expand(spec: str, part: str) -> List[Path]:
    path = Path(part)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and file_format(p))
        if not found:
            raise ValueError(f"{spec}: folder {part} holds no .jsonl, .json, .parquet or .txt file")
        return found
    found = sorted(Path(m) for m in glob.glob(part, recursive=True) if Path(m).is_file())
    if not found:
        raise ValueError(f"{spec}: {part} matches no file")
    return found


def inline_recipe(spec: str, text_field: str = "text", val_fraction: float = 0.05, ood: bool = False,
                  sample_by: str = "document") -> Recipe:
    """The recipe ``DOMAIN=FILES`` stands for; ValueError naming the spec on any problem."""
    domain, _, files_part = spec.partition("=")
    if not domain.isidentifier():
        raise ValueError(f"{spec}: domain {domain!r} must be a name of letters, digits and underscores")
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction {val_fraction} must be in (0, 1)")
    if sample_by not in SAMPLE_BY:
        raise ValueError(f"--sample-by {sample_by!r} is not one of {', '.join(SAMPLE_BY)}")
    parts = [p for p in files_part.split(",") if p]
    if not parts:
        raise ValueError(f"{spec}: no files after '='; write {domain}=FILE[,FILE...] (files, folders or globs)")
    files = list(dict.fromkeys(f for part in parts for f in _expand(spec, part)))
    formats = {f: file_format(f) for f in files}
    unknown = [str(f) for f, fmt in formats.items() if fmt is None]
    if unknown:
        raise ValueError(f"{spec}: {unknown[0]} is not .jsonl, .json, .parquet or .txt (optionally .gz)")
    kinds = sorted(set(formats.values()))
    if len(kinds) > 1:
        raise ValueError(f"{spec}: files of several formats ({', '.join(kinds)}); give each format its own domain "
                         "or a recipe file")
    source = {"paths": [str(f) for f in files], "format": kinds[0]}
    if kinds[0] == "txt":
        source["sample_by"] = sample_by
    else:
        source["text_field"] = text_field
    return Recipe(path=Path(spec), domain=domain, kind="local", source=source, val_fraction=val_fraction, ood=ood,
                  files=files)


def prepare_sources(sources: Sequence[Union[str, Path]], text_field: str = "text", val_fraction: float = 0.05,
                    ood: Iterable[str] = (), sample_by: str = "document") -> List[Recipe]:
    """Recipes for nexus-data prepare's arguments: recipe YAML files, and ``DOMAIN=FILES`` specs built with
    the given text field, validation fraction and sampling; domains in ``ood`` are evaluation-only."""
    ood = set(ood)
    inline = [str(s).partition("=")[0] for s in sources if is_inline(s)]
    unknown = sorted(ood - set(inline))
    if unknown:
        raise ValueError(f"--ood {','.join(unknown)}: no DOMAIN=FILES argument names it; recipe files say ood: "
                         "true themselves")
    return [inline_recipe(str(s), text_field, val_fraction, str(s).partition("=")[0] in ood, sample_by)
            if is_inline(s) else load_recipe(s) for s in sources]
