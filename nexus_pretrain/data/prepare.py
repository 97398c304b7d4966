"""`nexus-data prepare`: tokenize recipes into the shard store (see store.py), incrementally.

Documents are read in a fixed order and tokenized in batches, results kept in order, so the output is
byte-identical for any number of workers and any batch size. With one worker, batches are encoded on a
background thread of this process by the Rust encoder's own thread pool (one thread per core) while this
thread reads documents and writes shards; with N workers, by N spawned processes of cores/N threads each.
Shards of both splits are committed together and the manifest then records how many documents the
committed shards cover: an interrupted run resumes after the last commit, and a finished domain is
skipped when its recipe and tokenizer match. Shard cuts and the token budget are decided per document.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, islice
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tokenizers import Tokenizer
from tokenizers.models import BPE
from tqdm import tqdm

from nexus_pretrain.data import store
from nexus_pretrain.data.embedded import load_tokenizer as embedded_tokenizer
from nexus_pretrain.data.recipe import Recipe, iter_documents, load_recipe
from nexus_pretrain.data.tiktoken_encoder import encode_batch, tiktoken_encoding
from nexus_pretrain.data.tokens import backend_tokenizer, eos_id, token_dtype, tokenizer_hash, vocab_size
from nexus_pretrain.threads import cpu_cores

DEFAULT_SHARD_TOKENS = 1 << 27  # 256 MiB per uint16 shard
# A worker task is a batch of consecutive documents holding at least BATCH_CHARS characters (or
# BATCH_DOCUMENTS documents): large enough that the Rust thread pool and the task round trip are
# amortised, small enough that reading, tokenizing and writing overlap.
BATCH_CHARS = 1 << 19
BATCH_DOCUMENTS = 4096
# Words the BPE model caches (the library default is 10,000, after which new words are never cached: the
# embedded corpus alone has ~28k distinct pre-tokenized words). 100k words (~10 MB) measured 1.12x tokens/s
# with two threads, 1.04x with one, pinned to 2 idle cores (same ids); 1M words gave no more.
BPE_CACHE_WORDS = 100_000

_worker_tokenizer: Any = None


def rust_threads(workers: int) -> int:
    """Threads of each worker's Rust (rayon) pool: the cores shared out over the workers, at least 1."""
    return max(1, cpu_cores() // workers)


def load_tokenizer(spec: Optional[str] = None) -> Tuple[Any, str]:
    """A Hugging Face fast tokenizer and its name: the embedded one for None, else a local dir or hub name."""
    if spec is None or spec == "embedded":
        return embedded_tokenizer(), "embedded"
    from transformers import AutoTokenizer  # heavy: transformers, only for hub tokenizers

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


MIN_VALIDATION_TOKENS = 32 * 2049
"""Fewer validation tokens than 32 evaluation windows at the paper's data.seq_len (2048) draw a warning."""


class ValidationSplitWarning(UserWarning):
    """A prepared domain's validation split is empty or too small to evaluate on reliably."""


def validation_warning(manifest: Dict[str, Any]) -> Optional[str]:
    """One line if a prepared domain's validation split is empty or holds under MIN_VALIDATION_TOKENS, else None."""
    val = manifest["splits"]["val"]
    domain = manifest["domain"]
    fix = "add documents" if manifest["ood"] else f"raise the recipe's val_fraction (now {manifest['val_fraction']}) " \
                                                  "or add documents"
    if val["tokens"] == 0:
        return (f"domain {domain!r}: the validation split is empty ({manifest['documents_done']} documents in all); "
                f"a run evaluating it fails at start-up; {fix}")
    if val["tokens"] < MIN_VALIDATION_TOKENS:
        return (f"domain {domain!r}: the validation split holds only {val['tokens']} tokens ({val['documents']} "
                f"documents), under 32 evaluation windows at the paper's seq_len 2048: its loss is noisy and runs "
                f"need data.seq_len below {val['tokens']}; {fix}")
    return None


ENCODERS = ("hf", "tiktoken")
VERIFY_DOCUMENTS = 64  # per recipe, encoded by both encoders before --encoder tiktoken is trusted with it


def _init_worker(tokenizer_json: str, eos: int, dtype: str, threads: Optional[int] = None,
                 encoder: str = "hf") -> None:
    """Set up this process's tokenizer; in a worker process, `threads` sizes its Rust thread pool.
    With encoder="tiktoken" the same BPE runs in tiktoken (data/tiktoken_encoder.py) on `threads` threads."""
    global _worker_tokenizer
    if encoder == "tiktoken":
        _worker_tokenizer = (tiktoken_encoding(tokenizer_json), np.dtype(dtype), eos, threads or cpu_cores())
        return
    if threads is not None:
        # Read by the Rust pool when it first runs (before this fresh process's first encode); a value
        # the user exported wins. The main process keeps the default: one thread per core.
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if threads > 1 else "false")


    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    if isinstance(tokenizer.model, BPE) and hasattr(tokenizer.model, "_resize_cache"):
        tokenizer.model._resize_cache(BPE_CACHE_WORDS)  # not in tokenizer.json; speed only, same ids
    _worker_tokenizer = (tokenizer, np.dtype(dtype), eos, None)


def _ready(_: int) -> int:
    return os.getpid()


def _encode(texts: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Token ids of a batch of documents, each followed by EOS, concatenated; and each document's length.

    One Rust call for the whole batch (no offsets computed); EOS is appended to each id list and one
    `np.fromiter` pass fills the shard-dtype array (a quarter cheaper than a slice assignment per document).
    """
    tokenizer, dtype, eos, tiktoken_threads = _worker_tokenizer
    if tiktoken_threads is not None:
        ids = encode_batch(tokenizer, texts, tiktoken_threads)
    else:
        encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        ids = [encoding.ids for encoding in encode(texts, add_special_tokens=False)]
    for doc in ids:
        doc.append(eos)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


def _batches(documents: Iterable[str], skip: int) -> Iterator[List[str]]:
    batch: List[str] = []
    chars = 0
    for i, text in enumerate(documents):
        if i < skip:
            continue
        batch.append(text)
        chars += len(text)
        if chars >= BATCH_CHARS or len(batch) >= BATCH_DOCUMENTS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _encoded(batches: Iterator[List[str]], pool: Any, workers: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Encoded batches in input order, sources read lazily.

    With a process pool, at most 2 batches per worker are in flight. Without one, the batches are
    encoded in one background thread (the Rust encoder releases the GIL and runs on its own thread
    pool) while this thread reads the next batch and writes shards: one batch in flight.
    """
    pending: deque = deque()
    if pool is None:
        with ThreadPoolExecutor(1, thread_name_prefix="nexus-tokenize") as thread:
            for batch in batches:
                pending.append(thread.submit(_encode, batch))
                if len(pending) >= 2:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        return
    for batch in batches:
        pending.append(pool.apply_async(_encode, (batch,)))
        if len(pending) >= 2 * workers:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _validation_mask(domain: str, first: int, count: int, val_fraction: float) -> np.ndarray:
    return np.fromiter((is_validation(domain, i, val_fraction) for i in range(first, first + count)),
                       dtype=bool, count=count)


def _new_manifest(recipe: Recipe, tokenizer: Any, name: str, shard_tokens: int, digest: str) -> Dict[str, Any]:
    return {"format": store.FORMAT_VERSION, "domain": recipe.domain, "source": recipe.describe(),
            "recipe_hash": recipe.content_hash(), "tokenizer": {"name": name, "hash": digest},
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


Chunks = List[Tuple[np.ndarray, np.ndarray]]  # (tokens of consecutive documents, each one's length)


def _commit(out: Path, manifest: Dict[str, Any], buffers: Dict[str, Chunks], documents_done: int,
            tokens_done: int) -> None:
    """Write every non-empty split buffer as a new shard, then record them in the manifest."""
    dtype = np.dtype(manifest["dtype"])
    for split, chunks in buffers.items():
        if not chunks:
            continue
        info = manifest["splits"][split]
        lengths = np.concatenate([chunk_lengths for _, chunk_lengths in chunks])
        starts = np.cumsum(lengths) - lengths
        tokens = np.concatenate([chunk_tokens for chunk_tokens, _ in chunks]).astype(dtype, copy=False)
        entry = store.write_shard(out / manifest["domain"] / split, len(info["shards"]), tokens, starts)
        info["shards"].append(entry)
        info["tokens"] += entry["tokens"]
        info["documents"] += entry["documents"]
        chunks.clear()
    manifest["documents_done"], manifest["tokens_done"] = documents_done, tokens_done
    store.write_manifest(out, manifest["domain"], manifest)


def _first_event(lengths: np.ndarray, is_val: np.ndarray, buffered: Dict[str, int], tokens_done: int,
                 shard_tokens: int, budget: Optional[int]) -> Tuple[int, bool]:
    """Index of the first document after which a shard is due or the budget is reached (len(lengths) if
    none), and whether it is the budget. Decided per document, so shards do not depend on batching."""
    due = (buffered["train"] + np.cumsum(np.where(is_val, 0, lengths)) >= shard_tokens) | \
          (buffered["val"] + np.cumsum(np.where(is_val, lengths, 0)) >= shard_tokens)
    over = tokens_done + np.cumsum(lengths) >= budget if budget is not None else np.zeros(len(lengths), bool)
    events = np.flatnonzero(due | over)
    if not len(events):
        return len(lengths), False
    return int(events[0]), bool(over[events[0]])


def prepare_recipe(recipe: Recipe, out: Path, tokenizer: Any, name: str, pool: Any = None, workers: int = 1,
                   shard_tokens: int = DEFAULT_SHARD_TOKENS, progress: bool = True,
                   digest: Optional[str] = None) -> Dict[str, Any]:
    """Tokenize one recipe into `out/<domain>/`; returns {tokens, seconds, skipped} for this run.

    `digest` is `tokenizer_hash(tokenizer)` when the caller has it (it takes ~0.1 s: prepare computes it once).
    """

    digest = digest or tokenizer_hash(tokenizer)
    manifest = _existing_manifest(recipe, out, _new_manifest(recipe, tokenizer, name, shard_tokens, digest))
    if manifest["complete"]:
        return {"domain": recipe.domain, "tokens": 0, "seconds": 0.0, "skipped": True}
    shard_tokens, budget = manifest["shard_tokens"], recipe.token_budget
    docs_done, tokens_done = manifest["documents_done"], manifest["tokens_done"]
    buffers: Dict[str, Chunks] = {s: [] for s in store.SPLITS}
    buffered = {s: 0 for s in store.SPLITS}
    start_time, start_tokens = time.perf_counter(), tokens_done
    bar = tqdm(total=budget, initial=tokens_done, unit="tok", unit_scale=True, desc=recipe.domain,
               disable=not progress, dynamic_ncols=True)
    finished = False
    for flat, lengths in _encoded(_batches(iter_documents(recipe), docs_done), pool, workers):
        count = len(lengths)
        is_val = (np.ones(count, dtype=bool) if recipe.ood
                  else _validation_mask(recipe.domain, docs_done, count, recipe.val_fraction))
        starts = np.cumsum(lengths) - lengths
        first = 0
        while first < count and not finished:
            # Documents first..last (inclusive) go to the buffers in one step per split.
            event, finished = _first_event(lengths[first:], is_val[first:], buffered, tokens_done, shard_tokens,
                                           budget)
            last = min(first + event, count - 1)
            for split, mask in (("train", ~is_val[first:last + 1]), ("val", is_val[first:last + 1])):
                if mask.any():
                    chosen = lengths[first:last + 1][mask]
                    span = flat[starts[first]:starts[last] + lengths[last]]
                    tokens = span if mask.all() else span[np.repeat(mask, lengths[first:last + 1])]
                    buffers[split].append((tokens, chosen))
                    buffered[split] += int(chosen.sum())
            added = int(lengths[first:last + 1].sum())
            docs_done, tokens_done = docs_done + last + 1 - first, tokens_done + added
            bar.update(added)
            if event < count - first and not finished:
                _commit(out, manifest, buffers, docs_done, tokens_done)
                buffered = {s: 0 for s in store.SPLITS}
            first = last + 1
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


def check_tiktoken_matches(recipes: Sequence[Recipe], tokenizer: Any, count: int = VERIFY_DOCUMENTS) -> None:
    """Encode each recipe's first ``count`` documents with both encoders; ValueError at the first difference."""
    backend = backend_tokenizer(tokenizer)
    fast = tiktoken_encoding(backend.to_str())
    for recipe in recipes:
        docs = list(islice(iter_documents(recipe), count))
        want = [e.ids for e in backend.encode_batch(docs, add_special_tokens=False)]
        for i, (doc, ids) in enumerate(zip(docs, encode_batch(fast, docs, cpu_cores()))):
            if ids != want[i]:
                raise ValueError(f"{recipe.path}: --encoder tiktoken gives other ids than the tokenizer for document "
                                 f"{i} ({doc[:40]!r}...); use --encoder hf")


def prepare(recipe_paths: Sequence[str | Path | Recipe], out: str | Path, tokenizer: Optional[str] = None,
            workers: int = 1, shard_tokens: int = DEFAULT_SHARD_TOKENS, progress: bool = True,
            encoder: str = "hf") -> List[Dict[str, Any]]:
    """Prepare every recipe under `out` (one folder per domain); returns one summary per recipe.

    encoder="tiktoken" encodes with tiktoken (byte-level BPE tokenizers only; checked on each recipe's
    first documents against the tokenizer's own encoder)."""
    recipes = [p if isinstance(p, Recipe) else load_recipe(p) for p in recipe_paths]
    domains = [r.domain for r in recipes]
    duplicate = next((d for d in domains if domains.count(d) > 1), None)
    if duplicate:
        raise ValueError(f"domain {duplicate!r} is named by several recipes; prepare them into different --out dirs")
    if shard_tokens <= 0 or workers <= 0:
        raise ValueError("--shard-tokens and --workers must be positive")
    if encoder not in ENCODERS:
        raise ValueError(f"--encoder {encoder!r} is not one of {', '.join(ENCODERS)}")
    tok, name = load_tokenizer(tokenizer)
    if encoder == "tiktoken":
        check_tiktoken_matches(recipes, tok)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool = None
    init_args = (backend_tokenizer(tok).to_str(), eos_id(tok), token_dtype(vocab_size(tok)).name)
    if workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker,
                                                         (*init_args, rust_threads(workers), encoder))
        pool.map(_ready, range(workers), chunksize=1)  # start-up (imports) before the first recipe's clock
    else:
        _init_worker(*init_args, encoder=encoder)
    try:
        digest = tokenizer_hash(tok)
        summaries = [prepare_recipe(r, out, tok, name, pool, workers, shard_tokens, progress, digest) for r in recipes]
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    for recipe in recipes:
        warning = validation_warning(store.read_manifest(out, recipe.domain))
        if warning:
            warnings.warn(warning, ValidationSplitWarning, stacklevel=2)
    return summaries
