"""From the data config to the training sampler and the validation/OOD streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict

import numpy as np

from nexus_pretrain.data.sampler import MixtureSampler


@dataclass
class RunData:
    """Everything the trainer reads: the tokenizer, the mixture sampler and held-out streams."""

    tokenizer: Any
    sampler: MixtureSampler
    val_streams: Dict[str, np.ndarray]
    ood_streams: Dict[str, np.ndarray]


def build_data(cfg: Any, seed: int) -> RunData:
    """Load the configured source's tokens and build the sampler (data.source=embedded)."""
    if cfg.source != "embedded":
        raise ValueError(f"data.source={cfg.source!r} is not one of embedded")
    from nexus_pretrain.data import embedded
    from nexus_pretrain.data.tokens import domain_tokens

    tokenizer = embedded.load_tokenizer()
    known = set(embedded.DOMAINS)
    for name in list(cfg.domains) + list(cfg.ood_domains):
        if name not in known:
            raise ValueError(f"data domain {name!r} is not in the embedded corpus ({', '.join(sorted(known))}); "
                             "fix data.domains / data.ood_domains")
    train_domains = [d for d, w in cfg.domains.items() if w > 0]
    train = {d: domain_tokens(d, "train", tokenizer=tokenizer, val_fraction=cfg.val_fraction) for d in train_domains}
    val = {d: domain_tokens(d, "val", tokenizer=tokenizer, val_fraction=cfg.val_fraction) for d in train_domains}
    ood = {d: domain_tokens(d, "val", tokenizer=tokenizer, val_fraction=cfg.val_fraction) for d in cfg.ood_domains}
    sampler = MixtureSampler(train, dict(cfg.domains), cfg.seq_len, seed, cfg.microbatch_domains)
    return RunData(tokenizer=tokenizer, sampler=sampler, val_streams=val, ood_streams=ood)
