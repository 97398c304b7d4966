"""Prepared shards checked against their manifest: present, of the recorded size and sha256, and every
token id below the vocabulary.

Reading a shard computes its sha256 and its largest id in one pass. A shard that passed is remembered in
``cache_root()/verified_shards.json`` under its resolved path with its size, mtime and ctime, so a later
run reads only shards that changed since (rewriting a file, even one that keeps its size and mtime,
changes its ctime). ``nexus-data verify`` always reads every shard.
"""

from __future__ import annotations

import _thread
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nexus_pretrain.data import store
from nexus_pretrain.data.tokens import cache_root

log = logging.getLogger(__name__)

VERIFIED_CACHE = "verified_shards.json"
BACKGROUND_BYTES = 2 << 30
"""Unverified shard bytes above which a run checks them in a background thread (sha256 reads ~1 GB/s)."""
_BLOCK = 1 << 22


@dataclass(frozen=True)
class Shard:
    """One shard of a prepared domain and what its manifest says about it."""

    path: Path
    entry: Dict[str, Any]  # manifest entry: file, tokens, documents, bytes, sha256
    dtype: np.dtype


def manifest_shards(root: store.PathLike, domain: str) -> List[Shard]:
    """Every shard of both splits of a fully prepared domain (ValueError naming the manifest if unfinished)."""
    manifest = store.complete_manifest(root, domain)
    dtype = np.dtype(manifest["dtype"])
    return [Shard(Path(root) / domain / split / entry["file"], entry, dtype)
            for split in store.SPLITS for entry in manifest["splits"][split]["shards"]]


def scan(path: Path, dtype: np.dtype) -> Tuple[str, int]:
    """sha256 of a shard's bytes and its largest token id (-1 when empty), in one read."""
    digest, largest = hashlib.sha256(), -1
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(_BLOCK), b""):
            digest.update(block)
            largest = max(largest, int(np.frombuffer(block, dtype=dtype).max()))
    return digest.hexdigest(), largest


def vocabulary_problem(path: Path, dtype: np.dtype, vocab: int) -> str:
    """One line naming the first token id of a shard at or above ``vocab`` and its offset (in tokens)."""
    tokens = np.memmap(path, dtype=dtype, mode="r")
    offset = int(np.argmax(tokens >= vocab))
    return (f"{path}: token id {int(tokens[offset])} at offset {offset} is outside the tokenizer's {vocab} ids; "
            "the shard is corrupt or was made with another tokenizer, prepare it again")


def cache_file() -> Path:
    """Where shards that passed are remembered."""
    return cache_root() / VERIFIED_CACHE


def _stamp(path: Path) -> List[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


class VerifiedShards:
    """Shards that passed a full read, by resolved path: their stat stamp, sha256 and largest id."""

    def __init__(self, path: Optional[Path] = None):
        self.path = Path(path) if path is not None else cache_file()
        self.entries: Dict[str, Dict[str, Any]] = self._read()
        self.added: Dict[str, Dict[str, Any]] = {}

    def _read(self) -> Dict[str, Dict[str, Any]]:
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # absent or damaged: the cache only saves reading time
            return {}
        return entries if isinstance(entries, dict) else {}

    def largest_id(self, shard: Shard) -> Optional[int]:
        """The largest id of a shard that passed before and has not changed since (same sha256 expected), else None."""
        known = self.entries.get(str(shard.path.resolve()))
        if not isinstance(known, dict) or known.get("sha256") != shard.entry["sha256"]:
            return None
        return known.get("max_id") if known.get("stamp") == _stamp(shard.path) else None

    def add(self, shard: Shard, largest: int) -> None:
        """Remember that a shard passed."""
        entry = {"stamp": _stamp(shard.path), "sha256": shard.entry["sha256"], "max_id": largest}
        key = str(shard.path.resolve())
        self.entries[key] = self.added[key] = entry

    def save(self) -> None:
        """Merge what was added into the cache file (dropping files that no longer exist); errors are ignored."""
        if not self.added:
            return
        merged = {**self._read(), **self.added}
        merged = {key: value for key, value in merged.items() if os.path.exists(key)}
        text = json.dumps(merged, sort_keys=True).encode("utf-8")
        try:
            store._write_atomically(self.path, lambda f: f.write(text))
        except OSError:
            pass


def check_shard(shard: Shard, vocab: int, cache: Optional[VerifiedShards] = None) -> Optional[str]:
    """One line saying what is wrong with a shard (missing, size, sha256, an id >= vocab), or None.

    With a cache, a shard that passed before and is unchanged is not read again."""
    problem = store.size_problem(shard.path, shard.entry, shard.dtype)
    if problem:
        return problem
    largest = cache.largest_id(shard) if cache is not None else None
    if largest is None:
        digest, largest = scan(shard.path, shard.dtype)
        if digest != shard.entry["sha256"]:
            return store.checksum_problem(shard.path)
        if cache is not None:
            cache.add(shard, largest)
    if largest >= vocab:
        return vocabulary_problem(shard.path, shard.dtype, vocab)
    return None


def check_shards(shards: Sequence[Shard], vocab: int, cache: Optional[VerifiedShards] = None) -> List[str]:
    """check_shard over shards: every problem found, in order."""
    problems = [p for p in (check_shard(s, vocab, cache) for s in shards) if p]
    if cache is not None:
        cache.save()
    return problems


def summary(problems: Sequence[str], root: store.PathLike) -> str:
    """The first problem, saying how many more there are."""
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more; `nexus-data verify {root}` lists them)" if more else "")


def verify_path(path: store.PathLike) -> Tuple[List[str], List[str]]:
    """``nexus-data verify``: read every shard of the prepared domains under ``path`` (a data.path root or
    one domain's folder) against its manifest and the manifest's vocabulary. Returns (one line per domain
    that passed, one line per problem); refreshes the cache of verified shards."""
    path = Path(path)
    if (path / store.MANIFEST).is_file():
        root, domains = path.parent, [path.name]
    else:
        root = path
        domains = sorted(p.parent.name for p in path.glob(f"*/{store.MANIFEST}"))
    if not domains:
        raise ValueError(f"{path}: no prepared domain here (no {store.MANIFEST}); give the --out folder of "
                         "nexus-data prepare or one of its domain folders")
    cache = VerifiedShards()
    cache.entries = {}  # read everything
    passed, problems = [], []
    for domain in domains:
        try:
            manifest = store.complete_manifest(root, domain)
            shards = manifest_shards(root, domain)
        except (ValueError, KeyError) as error:
            problems.append(str(error))
            continue
        found = check_shards(shards, int(manifest["vocab_size"]), cache)
        problems += found
        if not found:
            tokens = sum(s.entry["tokens"] for s in shards)
            passed.append(f"{domain}: {len(shards)} shards, {tokens} tokens: sizes, sha256 and ids "
                          f"(< {manifest['vocab_size']}) match {store.manifest_path(root, domain)}")
    return passed, problems


class ShardCheck:
    """The shards of some prepared domains checked once for a run (check_shard with the cache).

    When more than ``background_bytes`` must be read, the check runs in a background thread while the
    run starts: a problem then prints its one line to stderr and interrupts the main thread
    (KeyboardInterrupt), so the run stops at once rather than train on, or checkpoint, a damaged shard.
    """

    def __init__(self, root: store.PathLike, domains: Sequence[str], vocab: int,
                 background_bytes: int = BACKGROUND_BYTES):
        self.root, self.vocab = Path(root), vocab
        self.shards = [s for d in dict.fromkeys(domains) for s in manifest_shards(root, d)]
        self.cache = VerifiedShards()
        self.problems: List[str] = []
        self.thread: Optional[threading.Thread] = None
        quick = [p for p in (store.size_problem(s.path, s.entry, s.dtype) for s in self.shards) if p]
        if quick:
            raise ValueError(summary(quick, self.root))
        self.pending_bytes = sum(s.entry["bytes"] for s in self.shards if self.cache.largest_id(s) is None)
        if self.pending_bytes <= background_bytes:
            self._run()
            self.raise_if_failed()
        else:
            self.thread = threading.Thread(target=self._run_in_background, name="nexus-shard-check", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        self.problems = check_shards(self.shards, self.vocab, self.cache)

    def _run_in_background(self) -> None:
        try:
            self._run()
        except OSError as error:
            self.problems = [f"{self.root}: reading shards failed ({error})"]
        if self.problems:
            log.error(f"error: {summary(self.problems, self.root)}")
            _thread.interrupt_main()

    def raise_if_failed(self) -> None:
        """ValueError with the first problem found so far (and how many more)."""
        if self.problems:
            raise ValueError(summary(self.problems, self.root))

    def wait(self) -> None:
        """Block until the check is done; raise its problem if any."""
        if self.thread is not None:
            self.thread.join()
        self.raise_if_failed()
