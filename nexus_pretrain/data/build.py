"""From the data config to the training sampler and the validation/OOD streams."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from nexus_pretrain.data import embedded, store
from nexus_pretrain.data.mixture import apply_fixed_shares
from nexus_pretrain.data.prepare import load_tokenizer
from nexus_pretrain.data.sampler import MixtureSampler
from nexus_pretrain.data.tokens import domain_tokens, tokenizer_hash

Streams = Dict[str, Any]  # numpy arrays, memmaps or store.ShardedStream: anything with len() and [a:b]


@dataclass
class RunData:
    """Everything the trainer reads: the tokenizer, the mixture sampler and held-out streams."""
    tokenizer: Any
    sampler: MixtureSampler  # or sft.sampler.SFTSampler: anything with domains, weights, train_tokens, micro_batch()
    val_streams: Dict[str, np.ndarray]
    ood_streams: Dict[str, np.ndarray]


def build_pretrain_data(cfg: Any, seed: int) -> RunData:
    """Load the tokens of data.source=embedded or shards and build the mixture sampler (data.source=sft is
    nexus_pretrain.sft.data's; nexus_pretrain.run_data.build_data picks by source)."""
    weights = dict(cfg.domains)
    if cfg.fixed_shares:
        weights = apply_fixed_shares(weights, dict(cfg.fixed_shares))
    train_domains = [d for d, w in weights.items() if w > 0]
    if cfg.source == "embedded":
        tokenizer, train, val, ood = _embedded_streams(cfg, train_domains)
    elif cfg.source == "shards":
        tokenizer, train, val, ood = shard_streams(cfg, train_domains)
    else:
        raise ValueError(f"data.source={cfg.source!r} is not one of embedded, shards, sft")
    sampler = MixtureSampler(train, weights, cfg.seq_len, seed, cfg.microbatch_domains)
    return RunData(tokenizer=tokenizer, sampler=sampler, val_streams=val, ood_streams=ood)


def _embedded_streams(cfg: Any, train_domains: List[str]) -> Tuple[Any, Streams, Streams, Streams]:
    tokenizer = embedded.load_tokenizer()
    known = set(embedded.DOMAINS)
    for name in list(cfg.domains) + list(cfg.ood_domains):
        if name not in known:
            raise ValueError(f"data domain {name!r} is not in the embedded corpus ({', '.join(sorted(known))}); "
                             "fix data.domains / data.ood_domains")
    train = {d: domain_tokens(d, "train", tokenizer=tokenizer, val_fraction=cfg.val_fraction) for d in train_domains}
    val = {d: domain_tokens(d, "val", tokenizer=tokenizer, val_fraction=cfg.val_fraction) for d in train_domains}
    ood = {d: domain_tokens(d, "val", tokenizer=tokenizer, val_fraction=cfg.val_fraction) for d in cfg.ood_domains}
    return tokenizer, train, val, ood


def shard_streams(cfg: Any, train_domains: List[str]) -> Tuple[Any, Streams, Streams, Streams]:
    """The tokenizer and the train, validation and OOD streams of prepared shards under data.path."""
    if not cfg.path:
        raise ValueError("data.path is not set; with data.source=shards set it to the --out folder of "
                         "nexus-data prepare")
    root = Path(cfg.path)
    tokenizer, _ = load_tokenizer(cfg.tokenizer)
    expected = tokenizer_hash(tokenizer)
    for domain in [*train_domains, *cfg.ood_domains]:
        manifest = store.complete_manifest(root, domain)
        if manifest["tokenizer"]["hash"] != expected:
            raise ValueError(f"{store.manifest_path(root, domain)}: shards were made with tokenizer "
                             f"{manifest['tokenizer']['name']!r} (hash {manifest['tokenizer']['hash']}), but "
                             f"data.tokenizer={cfg.tokenizer!r} has hash {expected}; set data.tokenizer to match")
    train = {d: store.open_stream(root, d, "train") for d in train_domains}
    val = {d: store.open_stream(root, d, "val") for d in train_domains}
    ood = {d: store.open_stream(root, d, "val") for d in cfg.ood_domains}
    return tokenizer, train, val, ood


def shard_domains(cfg: Any, data: RunData) -> List[str]:
    """The domains a run reads from prepared shards under data.path: training and validation of
    data.source=shards, and the OOD domains of data.source=shards or sft with data.path set."""
    if cfg.source == "shards":
        return list(dict.fromkeys([*data.sampler.domains, *data.ood_streams]))
    if cfg.source == "sft" and cfg.path:
        return list(data.ood_streams)
    return []


def load_tokenizer_for(cfg: Any) -> Any:
    """The tokenizer a data config trains with (without loading any tokens)."""
    if cfg.source == "embedded":
        return embedded.load_tokenizer()

    return load_tokenizer(cfg.tokenizer)[0]
