"""`nexus-data prepare`: tokenize recipes into the shard store (see store.py), incrementally.

Documents are read in a fixed order and tokenized in worker processes, results kept in order, so the
output is byte-identical for any number of workers. Shards of both splits are committed together
and the manifest then records how many documents the committed shards cover: an interrupted run
resumes after the last commit, and a finished domain is skipped when its recipe and tokenizer match.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import deque
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from nexus_pretrain.data import store
from nexus_pretrain.data.recipe import Recipe, iter_documents, load_recipe
from nexus_pretrain.data.tokens import backend_tokenizer, eos_id, token_dtype, tokenizer_hash, vocab_size

DEFAULT_SHARD_TOKENS = 1 << 27  # 256 MiB per uint16 shard
BATCH_DOCUMENTS = 256

_worker_tokenizer: Any = None


def load_tokenizer(spec: Optional[str] = None) -> Tuple[Any, str]:
    """A Hugging Face fast tokenizer and its name: the embedded one for None, else a local dir or hub name."""
    if spec is None or spec == "embedded":
        from nexus_pretrain.data.embedded import load_tokenizer as embedded_tokenizer

        return embedded_tokenizer(), "embedded"
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as error:
        raise ValueError(f"tokenizer {spec!r}: cannot load ({str(error).splitlines()[0]})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"tokenizer {spec!r}: not a fast (Rust) tokenizer; give a directory with tokenizer.json")
    return tokenizer, str(spec)


def is_validation(domain: str, index: int, val_fraction: float) -> bool:
    """Whether document `index` of a domain is held out: a fixed hash of (domain, index) below val_fraction."""
    digest = hashlib.sha256(f"{domain}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def _init_worker(tokenizer_json: str, eos: int, dtype: str) -> None:
    global _worker_tokenizer
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    _worker_tokenizer = (tokenizer, np.array([eos], dtype=dtype))


def _encode(texts: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Token ids of a batch of documents, each followed by EOS, concatenated; and each document's length."""
    tokenizer, eos = _worker_tokenizer
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    parts: List[np.ndarray] = []
    for encoding in encode(texts, add_special_tokens=False):
        parts.append(np.asarray(encoding.ids, dtype=eos.dtype))
        parts.append(eos)
    lengths = np.array([len(p) + 1 for p in parts[::2]], dtype=np.int64)
    return np.concatenate(parts), lengths


def _batches(documents: Iterable[str], skip: int) -> Iterator[List[str]]:
    batch: List[str] = []
    for i, text in enumerate(documents):
        if i < skip:
            continue
        batch.append(text)
        if len(batch) == BATCH_DOCUMENTS:
            yield batch
            batch = []
    if batch:
        yield batch


def _encoded(batches: Iterator[List[str]], pool: Any, workers: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Encoded batches in input order; at most 2 per worker in flight, so sources are read lazily."""
    if pool is None:
        yield from map(_encode, batches)
        return
    pending: deque = deque()
    for batch in batches:
        pending.append(pool.apply_async(_encode, (batch,)))
        if len(pending) >= 2 * workers:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _new_manifest(recipe: Recipe, tokenizer: Any, name: str, shard_tokens: int) -> Dict[str, Any]:
    return {"format": store.FORMAT_VERSION, "domain": recipe.domain, "source": recipe.describe(),
            "recipe_hash": recipe.content_hash(), "tokenizer": {"name": name, "hash": tokenizer_hash(tokenizer)},
            "dtype": token_dtype(vocab_size(tokenizer)).name, "eos_id": eos_id(tokenizer),
            "vocab_size": vocab_size(tokenizer), "ood": recipe.ood, "val_fraction": recipe.val_fraction,
            "token_budget": recipe.token_budget, "shard_tokens": shard_tokens, "documents_done": 0,
            "tokens_done": 0, "complete": False,
            "splits": {s: {"tokens": 0, "documents": 0, "shards": []} for s in store.SPLITS}}


def _existing_manifest(recipe: Recipe, out: Path, fresh: Dict[str, Any]) -> Dict[str, Any]:
    manifest = store.read_manifest(out, recipe.domain)
    if manifest is None:
        return fresh
    path = store.manifest_path(out, recipe.domain)
    if manifest["tokenizer"]["hash"] != fresh["tokenizer"]["hash"]:
        raise ValueError(f"{path}: shards were made with tokenizer {manifest['tokenizer']['name']!r} "
                         f"(hash {manifest['tokenizer']['hash']}), not {fresh['tokenizer']['name']!r} "
                         f"(hash {fresh['tokenizer']['hash']}); use that tokenizer or another --out")
    if manifest["recipe_hash"] != fresh["recipe_hash"]:
        raise ValueError(f"{path}: domain {recipe.domain!r} was prepared from a different recipe or different "
                         f"files than {recipe.path}; delete {path.parent} or use another --out")
    return manifest


def _commit(out: Path, manifest: Dict[str, Any], buffers: Dict[str, List[np.ndarray]], documents_done: int,
            tokens_done: int) -> None:
    """Write every non-empty split buffer as a new shard, then record them in the manifest."""
    dtype = np.dtype(manifest["dtype"])
    for split, docs in buffers.items():
        if not docs:
            continue
        info = manifest["splits"][split]
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        tokens = np.concatenate(docs).astype(dtype, copy=False)
        entry = store.write_shard(out / manifest["domain"] / split, len(info["shards"]), tokens, starts)
        info["shards"].append(entry)
        info["tokens"] += entry["tokens"]
        info["documents"] += entry["documents"]
        docs.clear()
    manifest["documents_done"], manifest["tokens_done"] = documents_done, tokens_done
    store.write_manifest(out, manifest["domain"], manifest)


def prepare_recipe(recipe: Recipe, out: Path, tokenizer: Any, name: str, pool: Any = None, workers: int = 1,
                   shard_tokens: int = DEFAULT_SHARD_TOKENS, progress: bool = True) -> Dict[str, Any]:
    """Tokenize one recipe into `out/<domain>/`; returns {tokens, seconds, skipped} for this run."""
    from tqdm import tqdm

    manifest = _existing_manifest(recipe, out, _new_manifest(recipe, tokenizer, name, shard_tokens))
    if manifest["complete"]:
        return {"domain": recipe.domain, "tokens": 0, "seconds": 0.0, "skipped": True}
    shard_tokens, budget = manifest["shard_tokens"], recipe.token_budget
    docs_done, tokens_done = manifest["documents_done"], manifest["tokens_done"]
    buffers: Dict[str, List[np.ndarray]] = {s: [] for s in store.SPLITS}
    buffered = {s: 0 for s in store.SPLITS}
    start_time, start_tokens = time.perf_counter(), tokens_done
    bar = tqdm(total=budget, initial=tokens_done, unit="tok", unit_scale=True, desc=recipe.domain,
               disable=not progress, dynamic_ncols=True)
    finished = False
    for flat, lengths in _encoded(_batches(iter_documents(recipe), docs_done), pool, workers):
        ends = np.cumsum(lengths)
        for end, length in zip(ends, lengths):
            split = "val" if recipe.ood or is_validation(recipe.domain, docs_done, recipe.val_fraction) else "train"
            buffers[split].append(flat[end - length:end])
            buffered[split] += int(length)
            docs_done, tokens_done = docs_done + 1, tokens_done + int(length)
            if budget is not None and tokens_done >= budget:
                finished = True
                break
            if max(buffered.values()) >= shard_tokens:
                _commit(out, manifest, buffers, docs_done, tokens_done)
                buffered = {s: 0 for s in store.SPLITS}
        bar.update(int(lengths.sum()))
        if finished:
            break
    bar.close()
    if docs_done == 0:
        raise ValueError(f"{recipe.path}: no documents left after reading and filtering; domain "
                         f"{recipe.domain!r} would be empty")
    manifest["complete"] = True
    _commit(out, manifest, buffers, docs_done, tokens_done)
    seconds = time.perf_counter() - start_time
    return {"domain": recipe.domain, "tokens": tokens_done - start_tokens, "seconds": seconds, "skipped": False}


def prepare(recipe_paths: Sequence[str | Path], out: str | Path, tokenizer: Optional[str] = None,
            workers: int = 1, shard_tokens: int = DEFAULT_SHARD_TOKENS, progress: bool = True) -> List[Dict[str, Any]]:
    """Prepare every recipe under `out` (one folder per domain); returns one summary per recipe."""
    recipes = [load_recipe(p) for p in recipe_paths]
    domains = [r.domain for r in recipes]
    duplicate = next((d for d in domains if domains.count(d) > 1), None)
    if duplicate:
        raise ValueError(f"domain {duplicate!r} is named by several recipes; prepare them into different --out dirs")
    if shard_tokens <= 0 or workers <= 0:
        raise ValueError("--shard-tokens and --workers must be positive")
    tok, name = load_tokenizer(tokenizer)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool = None
    init_args = (backend_tokenizer(tok).to_str(), eos_id(tok), token_dtype(vocab_size(tok)).name)
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, init_args)
    else:
        _init_worker(*init_args)
    try:
        return [prepare_recipe(r, out, tok, name, pool, workers, shard_tokens, progress) for r in recipes]
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
