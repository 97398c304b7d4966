"""Token streams of the embedded corpus, as consumed by the trainer's data loader.

A stream is the concatenation, over documents, of each document's token ids followed by the
end-of-text id. Streams are cached as .npy files keyed by the tokenizer and the corpus snapshot.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from .embedded import (END_OF_TEXT, MANIFEST_NAME, OOD_DOMAINS, check_domain, corpus_dir, load_documents,
                       tokenizer_dir)

SPLITS = ("train", "val")
# Backend settings that do not change which ids a text maps to.
_NON_ID_SETTINGS = ("truncation", "padding", "decoder")


def backend_tokenizer(tokenizer: Any):
    """The `tokenizers.Tokenizer` behind a transformers fast tokenizer (or the argument itself)."""
    return getattr(tokenizer, "backend_tokenizer", tokenizer)


def _untruncated(backend):
    # A transformers call with truncation=True leaves truncation switched on in the backend;
    # work on a copy so whole documents are encoded without touching the caller's tokenizer.
    if backend.truncation is None and backend.padding is None:
        return backend
    copy = type(backend).from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def vocab_size(tokenizer: Any) -> int:
    """Number of ids the tokenizer can produce, added tokens included."""
    return backend_tokenizer(tokenizer).get_vocab_size(with_added_tokens=True)


def eos_id(tokenizer: Any) -> int:
    """The id appended after every document: the tokenizer's EOS token, else `<|endoftext|>`."""
    token_id = getattr(tokenizer, "eos_token_id", None)
    if token_id is None:
        token_id = backend_tokenizer(tokenizer).token_to_id(END_OF_TEXT)
    if token_id is None:
        raise ValueError(f"tokenizer has neither an EOS token nor {END_OF_TEXT}")
    return int(token_id)


def token_dtype(vocabulary_size: int) -> np.dtype:
    """The smallest unsigned dtype holding every id: uint16 below 65536 ids, else uint32."""
    return np.dtype(np.uint16) if vocabulary_size < 2**16 else np.dtype(np.uint32)


def tokenize_documents(tokenizer: Any, docs: Sequence[str]) -> np.ndarray:
    """Token ids of every document, each followed by the EOS id, concatenated into one array.

    `tokenizer` is a transformers fast tokenizer or a `tokenizers.Tokenizer`.
    """
    backend = _untruncated(backend_tokenizer(tokenizer))
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    ids_per_doc = [encoding.ids for encoding in encode(list(docs), add_special_tokens=False)]
    lengths = np.fromiter((len(ids) + 1 for ids in ids_per_doc), dtype=np.int64, count=len(ids_per_doc))
    tokens = np.empty(int(lengths.sum()), dtype=token_dtype(vocab_size(tokenizer)))
    ends = np.cumsum(lengths)
    for ids, end, length in zip(ids_per_doc, ends, lengths):
        tokens[end - length:end - 1] = ids
    tokens[ends - 1] = eos_id(tokenizer)
    return tokens


def validation_indices(num_documents: int, val_fraction: float, salt: str) -> list[int]:
    """Sorted indices of the held-out documents: a fixed pseudo-random `val_fraction` of them.

    At least one document is held out and at least one kept (when there are two or more), and a
    smaller fraction always selects a subset of a larger one.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if num_documents < 2:
        raise ValueError(f"cannot split {num_documents} document(s) into train and val")
    count = min(num_documents - 1, max(1, round(val_fraction * num_documents)))
    ranked = sorted(range(num_documents), key=lambda i: hashlib.sha256(f"{salt}/{i}".encode()).digest())
    return sorted(ranked[:count])


def _check_request(domain: str, split: str, val_fraction: float) -> None:
    check_domain(domain)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLITS)}")
    if domain in OOD_DOMAINS and split == "train":
        raise ValueError(f"{domain!r} is an out-of-distribution domain and has no train split")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")


def split_documents(domain: str, split: str, val_fraction: float = 0.05) -> list[str]:
    """The documents of an embedded domain that belong to `split` ("train" or "val").

    Training domains are split at document level; OOD domains are evaluation-only, so their
    "val" split is every document and asking for "train" raises ValueError.
    """
    _check_request(domain, split, val_fraction)
    documents = load_documents(domain)
    if domain in OOD_DOMAINS:
        return documents
    held_out = set(validation_indices(len(documents), val_fraction, salt=domain))
    return [doc for i, doc in enumerate(documents) if (i in held_out) == (split == "val")]


def cache_root() -> Path:
    """This package's folder in the user's cache: $XDG_CACHE_HOME/nexus_pretrain, or ~/.cache/nexus_pretrain."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nexus_pretrain"


def default_cache_dir() -> Path:
    """Root of the token cache: cache_root()/embedded."""
    return cache_root() / "embedded"


@functools.lru_cache(maxsize=1)
def _default_tokenizer():
    """The embedded tokenizer through tokenizers: the ids of load_tokenizer(), without importing transformers."""
    return Tokenizer.from_file(str(tokenizer_dir() / "tokenizer.json"))


def _id_mapping_digest(tokenizer: Any) -> "hashlib._Hash":
    """sha256 over the tokenizer's text-to-ids mapping (tokenizer.json minus non-id settings) and EOS id."""
    config = json.loads(backend_tokenizer(tokenizer).to_str())
    for setting in _NON_ID_SETTINGS:
        config.pop(setting, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    digest.update(str(eos_id(tokenizer)).encode())
    return digest


def tokenizer_hash(tokenizer: Any) -> str:
    """Short hash of the tokenizer's text-to-ids mapping and EOS id (recorded in shard manifests)."""
    return _id_mapping_digest(tokenizer).hexdigest()[:16]


def cache_key(tokenizer: Any) -> str:
    """Short hash identifying the tokenizer's id mapping together with the corpus snapshot."""
    digest = _id_mapping_digest(tokenizer)
    digest.update((corpus_dir() / MANIFEST_NAME).read_bytes())
    return digest.hexdigest()[:16]


def _save_atomically(path: Path, tokens: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, tokens)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def domain_tokens(domain: str, split: str, *, tokenizer: Any = None, val_fraction: float = 0.05,
                  cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The token stream of one split of an embedded domain (see `split_documents`).

    `tokenizer` defaults to the embedded tokenizer. Results are cached as .npy files in
    `<cache_dir>/<cache_key>/`, `cache_dir` defaulting to `default_cache_dir()`.
    """
    _check_request(domain, split, val_fraction)
    name = f"{domain}-val.npy" if domain in OOD_DOMAINS else f"{domain}-{split}-valfrac{val_fraction!r}.npy"
    tokenizer = _default_tokenizer() if tokenizer is None else tokenizer
    path = Path(cache_dir or default_cache_dir()) / cache_key(tokenizer) / name
    if path.exists():
        return np.load(path)
    tokens = tokenize_documents(tokenizer, split_documents(domain, split, val_fraction))
    _save_atomically(path, tokens)
    return tokens


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy in nats of the empirical distribution of the token ids in `tokens`."""
    ids = np.asarray(tokens).ravel()
    if ids.size == 0:
        raise ValueError("unigram_entropy of an empty token array is undefined")
    counts = np.bincount(ids.astype(np.int64))
    probabilities = counts[counts > 0] / ids.size
    return float(-(probabilities * np.log(probabilities)).sum())
