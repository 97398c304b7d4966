"""On-disk store of prepared token shards, one folder per domain.

Layout of a prepared domain::

    <root>/<domain>/manifest.json
    <root>/<domain>/<split>/shard_00000.bin       raw token ids (uint16 or uint32), each document + EOS
    <root>/<domain>/<split>/shard_00000.idx.npy   int64 start offset of every document in the shard

The manifest records the source, the tokenizer (name and hash), the dtype, per-split token and
document counts, each shard's sha256 and size, and the recipe hash. Files are written atomically
(temporary file + os.replace), and a shard listed in the manifest is never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

SPLITS = ("train", "val")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
PathLike = Union[str, os.PathLike]


def shard_name(index: int) -> str:
    """File name of the index-th token shard of a split."""
    return f"shard_{index:05d}.bin"


def index_name(index: int) -> str:
    """File name of the document index of the index-th shard of a split."""
    return f"shard_{index:05d}.idx.npy"


def _write_atomically(path: Path, write: Callable[[Any], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600 files; shards are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(split_dir: Path, index: int, tokens: np.ndarray, doc_starts: np.ndarray) -> Dict[str, Any]:
    """Write one token shard and its document index; return its manifest entry."""
    path = split_dir / shard_name(index)
    _write_atomically(split_dir / index_name(index), lambda f: np.save(f, doc_starts.astype(np.int64)))
    _write_atomically(path, lambda f: f.write(tokens.tobytes()))
    return {"file": shard_name(index), "tokens": int(len(tokens)), "documents": int(len(doc_starts)),
            "bytes": int(tokens.nbytes), "sha256": hashlib.sha256(tokens.tobytes()).hexdigest()}


def manifest_path(root: PathLike, domain: str) -> Path:
    """Path of a domain's manifest.json."""
    return Path(root) / domain / MANIFEST


def read_manifest(root: PathLike, domain: str) -> Optional[Dict[str, Any]]:
    """A domain's manifest, or None when the domain has not been prepared under `root`."""
    path = manifest_path(root, domain)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: corrupt manifest ({error}); delete the domain folder and prepare it again") from None


def write_manifest(root: PathLike, domain: str, manifest: Dict[str, Any]) -> None:
    """Atomically replace a domain's manifest.json."""
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _write_atomically(manifest_path(root, domain), lambda f: f.write(text.encode("utf-8")))


class ShardedStream:
    """Read-only concatenation of several memmapped shards supporting len() and [a:b] slicing."""

    def __init__(self, shards: List[np.ndarray]):
        self.shards = shards
        self.ends = np.cumsum([len(s) for s in shards])
        self.dtype = shards[0].dtype

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("ShardedStream supports only contiguous slices stream[a:b]")
        start, stop, _ = key.indices(len(self))
        if stop <= start:
            return np.empty(0, dtype=self.dtype)
        first = int(np.searchsorted(self.ends, start, side="right"))
        parts = []
        for i in range(first, len(self.shards)):
            base = int(self.ends[i - 1]) if i else 0
            parts.append(self.shards[i][max(start - base, 0):stop - base])
            if stop <= self.ends[i]:
                break
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate(self.shards)
        return whole if dtype is None else whole.astype(dtype)


def complete_manifest(root: PathLike, domain: str) -> Dict[str, Any]:
    """The manifest of a fully prepared domain; ValueError naming the file if missing or unfinished."""
    manifest = read_manifest(root, domain)
    path = manifest_path(root, domain)
    if manifest is None:
        raise ValueError(f"{path}: not found; domain {domain!r} is not prepared under {root} "
                         "(run `nexus-data prepare RECIPE --out DIR`)")
    if not manifest.get("complete"):
        raise ValueError(f"{path}: preparation of domain {domain!r} did not finish; re-run nexus-data prepare")
    return manifest


def size_problem(path: Path, entry: Dict[str, Any], dtype: np.dtype) -> Optional[str]:
    """One line saying why a shard is missing or not of its manifest size, or None if it is present and whole."""
    if not path.is_file():
        return f"{path}: shard listed in the manifest is missing"
    size = path.stat().st_size
    if size != entry["bytes"] or size != entry["tokens"] * dtype.itemsize:
        return f"{path}: truncated or corrupt shard ({size} bytes, manifest says {entry['bytes']})"
    return None


def checksum_problem(path: Path) -> str:
    """The one-line error of a shard whose sha256 differs from its manifest's."""
    return f"{path}: checksum mismatch (sha256 differs from the manifest); prepare it again"


def open_stream(root: PathLike, domain: str, split: str, verify: bool = False) -> Union[np.ndarray, ShardedStream]:
    """The token stream of one split of a prepared domain: a memmap, or a ShardedStream over several.

    Shard sizes are always checked against the manifest; `verify=True` also checks sha256 checksums.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLITS)}")
    manifest = complete_manifest(root, domain)
    entries = manifest["splits"][split]["shards"]
    if not entries:
        raise ValueError(f"{manifest_path(root, domain)}: domain {domain!r} has no {split} tokens "
                         "(empty domain, or too few documents for a val split)")
    dtype = np.dtype(manifest["dtype"])
    shards = []
    for entry in entries:
        path = Path(root) / domain / split / entry["file"]
        problem = size_problem(path, entry, dtype)
        if problem:
            raise ValueError(problem)
        if verify and sha256_file(path) != entry["sha256"]:
            raise ValueError(checksum_problem(path))
        shards.append(np.memmap(path, dtype=dtype, mode="r"))
    return shards[0] if len(shards) == 1 else ShardedStream(shards)


def document_starts(root: PathLike, domain: str, split: str) -> np.ndarray:
    """Start offset of every document of a split within its concatenated stream."""
    manifest = complete_manifest(root, domain)
    starts, offset = [], 0
    for i, entry in enumerate(manifest["splits"][split]["shards"]):
        starts.append(np.load(Path(root) / domain / split / index_name(i)) + offset)
        offset += entry["tokens"]
    return np.concatenate(starts) if starts else np.empty(0, dtype=np.int64)
