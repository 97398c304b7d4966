"""From a data config with source=sft to the trainer's RunData: SFT sampler, held-out SFT set, OOD streams."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from nexus_pretrain.data import embedded
from nexus_pretrain.data.build import RunData, shard_streams
from nexus_pretrain.data.prepare import is_validation, load_tokenizer
from nexus_pretrain.data.tokens import domain_tokens, eos_id
from nexus_pretrain.sft.examples import check_columns, load_rows, to_messages
from nexus_pretrain.sft.sampler import DOMAIN, SFTExamples, SFTSampler
from nexus_pretrain.sft.template import choose_template, encode_conversations

log = logging.getLogger(__name__)


@dataclass
class EncodeStats:
    """What happened to a split's examples when fitted to seq_len + 1 tokens."""
    examples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_too_long: int = 0
    dropped_no_response: int = 0

    def describe(self) -> str:
        return (f"{self.kept} of {self.examples} kept ({self.truncated} truncated, {self.dropped_too_long} dropped as "
                f"too long, {self.dropped_no_response} dropped with no response token)")


def encode_split(rows: Any, tokenizer: Any, sft: Any, seq_len: int, where: str) -> Tuple[SFTExamples, EncodeStats]:
    """Tokenize a datasets.Dataset of examples with the chat template and fit them to seq_len + 1 tokens."""
    if len(rows) == 0:
        raise ValueError(f"{where} has no examples; check data.sft.dataset, its splits and data.val_fraction")
    check_columns(list(rows.column_names), sft.messages_field, sft.prompt_field, sft.response_field, where)
    template = choose_template(tokenizer, sft.template)

    def encode(batch: Dict[str, List[Any]]) -> Dict[str, Any]:
        examples = [dict(zip(batch, values)) for values in zip(*batch.values())]
        conversations = [to_messages(row, sft.messages_field, sft.prompt_field, sft.response_field, sft.system_prompt)
                         for row in examples]
        encoded = encode_conversations(tokenizer, template, conversations)
        return {"ids": [e.ids for e in encoded], "response": [e.response for e in encoded]}

    encoded = rows.map(encode, batched=True, remove_columns=list(rows.column_names), num_proc=sft.num_proc,
                       desc="tokenizing SFT examples")
    stats, ids, response = EncodeStats(examples=len(rows)), [], []
    limit = seq_len + 1
    for tokens, mask in zip(encoded["ids"], encoded["response"]):
        tokens, mask = np.asarray(tokens, dtype=np.int64), np.asarray(mask, dtype=bool)
        if len(tokens) > limit:
            if sft.overlong == "drop":
                stats.dropped_too_long += 1
                continue
            tokens, mask = tokens[:limit], mask[:limit]
            stats.truncated += 1
        if not mask[1:].any():  # no target left to train on (the first token is never a target)
            stats.dropped_no_response += 1
            continue
        ids.append(tokens)
        response.append(mask)
    stats.kept = len(ids)
    if not ids:
        fix = "raise data.seq_len or set data.sft.overlong=truncate" if sft.overlong == "drop" else "raise data.seq_len"
        raise ValueError(f"{where}: all {stats.examples} examples are longer than data.seq_len + 1 = {limit} tokens or "
                         f"have no response token within them; {fix}")

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id(tokenizer)
    return SFTExamples(ids, response, seq_len, pad), stats


def split_rows(cfg: Any) -> Tuple[Any, Any, str, str]:
    """Training rows and the first data.eval_sequences held-out rows (a datasets.Dataset each), and their
    descriptions."""

    sft = cfg.sft
    where = f"data.sft.dataset={sft.dataset!r} split {sft.split!r}"
    train = load_rows(sft.dataset, sft.split, sft.subset)
    if sft.val_split:
        val = load_rows(sft.dataset, sft.val_split, sft.subset)
        val_where = f"data.sft.dataset={sft.dataset!r} split {sft.val_split!r}"
    else:
        held = [is_validation(DOMAIN, i, cfg.val_fraction) for i in range(len(train))]
        val = train.select([i for i, h in enumerate(held) if h])
        train = train.select([i for i, h in enumerate(held) if not h])
        val_where = f"{where} (its held-out data.val_fraction={cfg.val_fraction})"
    if sft.max_examples is not None:
        train = train.select(range(min(sft.max_examples, len(train))))
    val = val.select(range(min(cfg.eval_sequences, len(val))))  # only these are ever scored
    return train, val, where, val_where


def ood_streams(cfg: Any, tokenizer: Any) -> Dict[str, Any]:
    """Held-out pretraining domains for the OOD loss: shards under data.path, else the embedded corpus."""
    if not cfg.ood_domains:
        return {}
    if cfg.path:
        return shard_streams(cfg, [])[3]
    if cfg.tokenizer not in (None, "embedded"):
        raise ValueError("data.ood_domains from the embedded corpus need the embedded tokenizer; set data.path to "
                         "shards prepared with data.tokenizer, or data.ood_domains=[]")

    for name in cfg.ood_domains:
        embedded.check_domain(name)
    return {d: domain_tokens(d, "val", tokenizer=tokenizer, val_fraction=cfg.val_fraction) for d in cfg.ood_domains}


def build_sft_data(cfg: Any, seed: int):
    """RunData for data.source=sft: the tokenizer, an SFTSampler, the held-out SFT set (val/sft) and OOD streams."""
    tokenizer = load_tokenizer(cfg.tokenizer)[0]
    # the template trained with goes out with the exported model (hf/), for inference with the same format
    tokenizer.chat_template = choose_template(tokenizer, cfg.sft.template)
    train_rows, val_rows, where, val_where = split_rows(cfg)
    train, train_stats = encode_split(train_rows, tokenizer, cfg.sft, cfg.seq_len, where)
    val, val_stats = encode_split(val_rows, tokenizer, cfg.sft, cfg.seq_len, val_where)
    if os.environ.get("RANK", "0") == "0":
        log.info(f"sft data: train {train_stats.describe()}; val {val_stats.describe()}")
    sampler = SFTSampler(train, seed)
    sampler.stats = {"train": train_stats, "val": val_stats}
    return RunData(tokenizer=tokenizer, sampler=sampler, val_streams={DOMAIN: val},
                   ood_streams=ood_streams(cfg, tokenizer))
