"""The embedded corpus shipped inside the package, and the tokenizer trained on it.

The corpus is a committed snapshot (built by data_pipelines/embedded/build_corpus.py) so that
demos and tests can train tiny models offline and identically on every machine:

- ``web``: Python documentation prose, ``math``: generated exercises with worked solutions,
  ``code``: CPython standard-library source. These are the training domains.
- ``legal``: software licence texts, held out for out-of-distribution evaluation only.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path
from typing import Any

TRAIN_DOMAINS = ("web", "math", "code")
OOD_DOMAINS = ("legal",)
DOMAINS = TRAIN_DOMAINS + OOD_DOMAINS

END_OF_TEXT = "<|endoftext|>"
MANIFEST_NAME = "MANIFEST.json"

_PACKAGE_DATA = Path(__file__).resolve().parent / "embedded"


def corpus_dir() -> Path:
    """Directory holding ``<domain>.jsonl.gz`` files, MANIFEST.json and NOTICE."""
    return _PACKAGE_DATA / "corpus"


def tokenizer_dir() -> Path:
    """Directory holding the Hugging Face tokenizer files trained on the training domains."""
    return _PACKAGE_DATA / "tokenizer"


def check_domain(domain: str) -> str:
    """Return `domain` unchanged, or raise ValueError naming the valid domains."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown embedded domain {domain!r}; valid domains are {', '.join(DOMAINS)}")
    return domain


def domain_path(domain: str) -> Path:
    """Path of the gzipped JSON-lines file of one domain."""
    return corpus_dir() / f"{check_domain(domain)}.jsonl.gz"


def load_manifest() -> dict[str, Any]:
    """The snapshot's MANIFEST.json: per-domain counts, checksums, sources and licences."""
    return json.loads((corpus_dir() / MANIFEST_NAME).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _load_records(domain: str) -> tuple[dict[str, str], ...]:
    with gzip.open(domain_path(domain), "rt", encoding="utf-8") as lines:
        return tuple(json.loads(line) for line in lines)


def load_records(domain: str) -> list[dict[str, str]]:
    """All records of a domain in snapshot order, each ``{"text", "domain", "source"}``."""
    return [dict(record) for record in _load_records(check_domain(domain))]


def load_documents(domain: str) -> list[str]:
    """The texts of all documents of a domain, in snapshot order."""
    return [record["text"] for record in _load_records(check_domain(domain))]


def load_tokenizer():
    """The byte-level BPE tokenizer of the embedded corpus as a Hugging Face fast tokenizer.

    `<|endoftext|>` (id 0) is its BOS, EOS and PAD token; there is no UNK token.
    """
    from transformers import PreTrainedTokenizerFast  # slow import, only when a tokenizer is wanted

    return PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir()))
