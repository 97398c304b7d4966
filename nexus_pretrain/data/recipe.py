"""Declarative data recipes: one YAML file per source, naming its domain and where its text comes from.

A recipe::

    domain: math
    source:                      # exactly one of embedded / hub / local
      hub: {name: HuggingFaceTB/finemath, config: finemath-3plus, split: train, text_field: text}
      # local: {paths: ["data/*.jsonl"], format: jsonl, text_field: text}   (paths relative to the recipe)
      # embedded: {domain: math}
    filters: {min_chars: 1, max_chars: null, dedup: exact}   # optional
    token_budget: null           # stop after this many tokens (optional)
    val_fraction: 0.05           # share of documents held out for validation
    ood: false                   # true: evaluation only, every document goes to the val split
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import yaml

from nexus_pretrain.data.embedded import DOMAINS, load_documents

SOURCE_KINDS = ("embedded", "hub", "local")
LOCAL_FORMATS = {"jsonl": "json", "json": "json", "parquet": "parquet", "txt": "text"}
_TOP_KEYS = {"domain", "source", "filters", "token_budget", "val_fraction", "ood"}
_SOURCE_KEYS = {"embedded": ({"domain"}, set()),
                "hub": ({"name", "text_field"}, {"split", "config", "data_dir"}),
                "local": ({"paths", "format"}, {"text_field", "sample_by"})}
_FILTER_KEYS = {"min_chars", "max_chars", "dedup"}


@dataclass
class Recipe:
    """A validated recipe; `path` is the YAML file it came from."""
    path: Path
    domain: str
    kind: str
    source: Dict[str, Any]
    min_chars: int = 1
    max_chars: Optional[int] = None
    dedup: str = "none"
    token_budget: Optional[int] = None
    val_fraction: float = 0.05
    ood: bool = False
    files: List[Path] = field(default_factory=list)

    def describe(self) -> str:
        """One-line human description of the source, stored in the manifest."""
        if self.kind == "embedded":
            return f"embedded:{self.source['domain']}"
        if self.kind == "hub":
            extra = "".join(f" {k}={self.source[k]}" for k in ("config", "data_dir") if self.source.get(k))
            return f"hub:{self.source['name']} split={self.source.get('split', 'train')}{extra}"
        return f"local:{self.source['format']} files={len(self.files)}"

    def content_hash(self) -> str:
        """Hash of everything that decides the prepared documents (local files by name and size)."""
        payload = {"domain": self.domain, "kind": self.kind, "source": self.source, "min_chars": self.min_chars,
                   "max_chars": self.max_chars, "dedup": self.dedup, "token_budget": self.token_budget,
                   "val_fraction": self.val_fraction, "ood": self.ood,
                   "files": [[f.name, f.stat().st_size] for f in self.files]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fail(path: Path, key: str, problem: str) -> None:
    raise ValueError(f"{path}: {key}: {problem}")


def _check_keys(path: Path, prefix: str, given: Dict[str, Any], required: set, optional: set) -> None:
    for key in sorted(set(given) - required - optional):
        _fail(path, f"{prefix}{key}", f"unknown key; expected {', '.join(sorted(required | optional))}")
    for key in sorted(required - set(given)):
        _fail(path, f"{prefix}{key}", "missing required key")


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; ValueError naming the file and key on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        _fail(path, "recipe", "must be a mapping with keys domain, source, ...")
    _check_keys(path, "", raw, {"domain", "source"}, _TOP_KEYS - {"domain", "source"})
    if not isinstance(raw["domain"], str) or not raw["domain"].isidentifier():
        _fail(path, "domain", f"{raw['domain']!r} must be a name of letters, digits and underscores")
    source = raw["source"]
    if not isinstance(source, dict) or len(source) != 1 or next(iter(source)) not in SOURCE_KINDS:
        _fail(path, "source", f"must have exactly one of {', '.join(SOURCE_KINDS)}")
    kind, spec = next(iter(source.items()))
    if not isinstance(spec, dict):
        _fail(path, f"source.{kind}", "must be a mapping")
    _check_keys(path, f"source.{kind}.", spec, *_SOURCE_KEYS[kind])
    filters = raw.get("filters") or {}
    if not isinstance(filters, dict):
        _fail(path, "filters", "must be a mapping")
    _check_keys(path, "filters.", filters, set(), _FILTER_KEYS)
    recipe = Recipe(path=path, domain=raw["domain"], kind=kind, source=dict(spec),
                    min_chars=filters.get("min_chars", 1), max_chars=filters.get("max_chars"),
                    dedup=filters.get("dedup", "none") or "none", token_budget=raw.get("token_budget"),
                    val_fraction=raw.get("val_fraction", 0.05), ood=bool(raw.get("ood", False)))
    _check_values(recipe)
    return recipe


def _check_values(r: Recipe) -> None:
    p = r.path
    if not isinstance(r.min_chars, int) or r.min_chars < 0:
        _fail(p, "filters.min_chars", f"{r.min_chars!r} must be a non-negative integer")
    if r.max_chars is not None and (not isinstance(r.max_chars, int) or r.max_chars < r.min_chars):
        _fail(p, "filters.max_chars", f"{r.max_chars!r} must be an integer >= min_chars")
    if r.dedup not in ("none", "exact"):
        _fail(p, "filters.dedup", f"{r.dedup!r} is not one of none, exact")
    if r.token_budget is not None and (not isinstance(r.token_budget, int) or r.token_budget <= 0):
        _fail(p, "token_budget", f"{r.token_budget!r} must be a positive integer")
    if not isinstance(r.val_fraction, (int, float)) or not 0 < r.val_fraction < 1:
        _fail(p, "val_fraction", f"{r.val_fraction!r} must be in (0, 1)")
    if r.kind == "embedded":
        if r.source["domain"] not in DOMAINS:
            _fail(p, "source.embedded.domain", f"{r.source['domain']!r} is not one of {', '.join(DOMAINS)}")
    if r.kind == "local":
        _resolve_local(r)


def _resolve_local(r: Recipe) -> None:
    spec, p = r.source, r.path
    if spec["format"] not in LOCAL_FORMATS:
        _fail(p, "source.local.format", f"{spec['format']!r} is not one of {', '.join(LOCAL_FORMATS)}")
    if spec["format"] == "txt" and spec.get("text_field", "text") != "text":
        _fail(p, "source.local.text_field", "txt files have no fields; leave it out")
    if spec.get("sample_by", "document") not in ("document", "line", "paragraph"):
        _fail(p, "source.local.sample_by", f"{spec['sample_by']!r} is not one of document, line, paragraph")
    patterns = spec["paths"] if isinstance(spec["paths"], list) else [spec["paths"]]
    files: List[Path] = []
    for pattern in patterns:
        full = Path(pattern) if Path(pattern).is_absolute() else p.parent / pattern
        matches = sorted(Path(m) for m in glob.glob(str(full), recursive=True) if Path(m).is_file())
        if not matches:
            _fail(p, "source.local.paths", f"{pattern!r} matches no files (relative paths start at the recipe)")
        files.extend(matches)
    r.files = files


def iter_texts(recipe: Recipe) -> Iterator[str]:
    """The source's document texts in a fixed order, before filtering."""
    if recipe.kind == "embedded":
        yield from load_documents(recipe.source["domain"])
    elif recipe.kind == "hub":
        import datasets  # heavy: datasets, only for hub and parquet sources

        spec = recipe.source
        dataset = datasets.load_dataset(spec["name"], spec.get("config"), split=spec.get("split", "train"),
                                        data_dir=spec.get("data_dir"), streaming=True)
        yield from _texts(dataset, spec["text_field"], f"hub dataset {spec['name']}")
    else:
        import datasets  # heavy: datasets, only for hub and parquet sources

        spec = recipe.source
        builder = LOCAL_FORMATS[spec["format"]]
        kwargs = {"sample_by": spec.get("sample_by", "document")} if builder == "text" else {}
        field_name = spec.get("text_field", "text")
        dataset = datasets.load_dataset(builder, data_files=[str(f) for f in recipe.files], split="train",
                                        streaming=True, **kwargs)
        try:
            yield from _texts(dataset, field_name, f"{recipe.path}: source.local.paths")
        except UnicodeDecodeError as error:  # a ValueError subclass, but not one of ours
            raise _file_error(recipe, builder, kwargs, error) from None
        except ValueError:
            raise
        except Exception as error:  # UnicodeDecodeError and the many pyarrow/datasets parse errors
            raise _file_error(recipe, builder, kwargs, error) from None


def _file_error(recipe: Recipe, builder: str, kwargs: Dict[str, Any], error: Exception) -> ValueError:
    """A one-line error naming the local file that `error` (raised while reading them all) came from."""
    import datasets  # heavy: datasets, only for hub and parquet sources

    for file in recipe.files:
        if isinstance(error, UnicodeDecodeError):
            try:
                file.read_bytes().decode("utf-8")
            except UnicodeDecodeError as bad:
                return ValueError(f"{file}: not valid UTF-8 (byte {bad.start}: {bad.reason})")
            continue
        try:
            for _ in datasets.load_dataset(builder, data_files=[str(file)], split="train", streaming=True, **kwargs):
                pass
        except Exception as bad:  # noqa: BLE001 (reporting whatever the reader raised)
            message = str(bad).splitlines()[0] if str(bad) else type(bad).__name__
            return ValueError(f"{file}: cannot read as {recipe.source['format']} ({message})")
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ValueError(f"{recipe.path}: source.local.paths: cannot read ({message})")


def _texts(dataset: Any, field_name: str, where: str) -> Iterator[str]:
    for row in dataset:
        if field_name not in row:
            raise ValueError(f"{where}: no field {field_name!r} (fields: {', '.join(row)}); fix text_field")
        text = row[field_name]
        if text is None:
            continue
        if not isinstance(text, str):
            raise ValueError(f"{where}: field {field_name!r} holds {type(text).__name__}, not text")
        yield text


def iter_documents(recipe: Recipe) -> Iterator[str]:
    """The recipe's documents after its filters (length bounds, exact dedup), in a fixed order."""
    seen = set()
    for text in iter_texts(recipe):
        if len(text) < recipe.min_chars or (recipe.max_chars is not None and len(text) > recipe.max_chars):
            continue
        if recipe.dedup == "exact":
            digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            if digest in seen:
                continue
            seen.add(digest)
        yield text
