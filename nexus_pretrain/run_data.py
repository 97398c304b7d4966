"""The data a run trains and evaluates on, for every data.source: token streams of the pretraining
corpora (data.build) or instruction examples (sft.data). Both build on the data package, so the choice
between them lives above it."""

from __future__ import annotations

from typing import Any

from nexus_pretrain.data.build import RunData, build_pretrain_data
from nexus_pretrain.sft.data import build_sft_data


def build_data(cfg: Any, seed: int) -> RunData:
    """The tokenizer, sampler and held-out streams of a data config (data.source=embedded, shards or sft)."""
    if cfg.source == "sft":
        return build_sft_data(cfg, seed)
    return build_pretrain_data(cfg, seed)
