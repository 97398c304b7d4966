"""Start-up checks of a training run: what would otherwise fail only after training is checked before
its first step.

- every validation and OOD stream holds at least one evaluation window (data.seq_len + 1 tokens);
- the run, checkpoint and export directories can be written;
- the checkpoint directory's disk has room for one checkpoint (a warning: other files may free space);
- every token id is below the tokenizer's vocabulary, and prepared shards match their manifest's sizes
  and sha256 (data/verify.py: read once per dataset, in the background when large);
- Nexus's inner steps are large enough for FP8 forwards to see them (a warning: the run is still Nexus,
  on weights seen through FP8);
- no pretraining domain is planned for more epochs than repeated data trains like fresh data
  (data/epochs.py; a warning: the run is valid, but not a once-per-token run like the paper's).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from nexus_pretrain.data.build import RunData, shard_domains
from nexus_pretrain.data.epochs import REPEATED_EPOCHS, describe, planned_epochs, repeated
from nexus_pretrain.data.tokens import default_cache_dir
from nexus_pretrain.data.verify import BACKGROUND_BYTES, ShardCheck
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.optim.inner_step import step_ratio, weight_scale
from nexus_pretrain.optim.traits import optimizer_traits
from nexus_pretrain.train.checkpoint import checkpoint_root

FP32_BYTES = 4
OPTIMIZER_STATE_COPIES = {"adamw": 2, "muon": 2}
"""fp32 values per parameter an outer optimizer checkpoints: Adam's two moments; Muon keeps one momentum for
the hidden matrices and Adam's two for the rest (an upper bound). Nexus checkpoints its outer optimizer's
state (the anchor is saved only mid-window, and checkpoints fall between steps)."""


FP8_VISIBLE_STEP_RATIO = 1e-3
"""The inner step ratio (optim.inner_step.step_ratio) below which FP8 forwards may hide most of Nexus's
alignment term: on the models of results/nexus-precision/ the term's direction under FP8 had a cosine with
fp64's of 0.41–0.95 at 1e-3, but 0.05–0.47 at 1e-4 and 0.01–0.03 at 1.5e-5 (where the paper's inner_lr of
0.01 puts a 1B model); between 1e-4 and 1e-3 it was not measured."""


class PreflightWarning(UserWarning):
    """A start-up check found something likely to fail later (e.g. too little disk for a checkpoint)."""


def preflight(cfg: Any, data: RunData, run_dir: Path, n_params: int, is_main: bool = True,
              background_bytes: int = BACKGROUND_BYTES) -> Optional[ShardCheck]:
    """Run every start-up check (module docstring); raise ConfigError or ValueError with one line naming the
    fix. The shard check reads data only on the main rank; it is returned (None without shards) so that a
    caller may ``wait()`` for one running in the background."""
    check_heldout_windows(cfg.data, data)
    check_writable(cfg, Path(run_dir))
    vocab = len(data.tokenizer)
    check_token_ids(cfg.data, data, vocab)
    if not is_main:
        return None
    warn_if_data_repeats(cfg, data)
    warn_if_disk_short(Path(run_dir), n_params, cfg.optim)
    domains = shard_domains(cfg.data, data)
    return ShardCheck(cfg.data.path, domains, vocab, background_bytes) if domains else None


def _held_out(data: RunData) -> List[Tuple[str, str, Any]]:
    return ([("validation split of domain", name, s) for name, s in data.val_streams.items()]
            + [("OOD domain", name, s) for name, s in data.ood_streams.items()])


def check_heldout_windows(data_cfg: Any, data: RunData) -> None:
    """ConfigError if a validation or OOD stream is shorter than one evaluation window (data.seq_len + 1)."""
    seq_len = data_cfg.seq_len
    for kind, name, stream in _held_out(data):
        if hasattr(stream, "eval_batches"):  # SFT examples are encoded at seq_len and check it themselves
            continue
        if len(stream) - 1 < seq_len:
            fix = ("drop it from data.ood_domains" if kind == "OOD domain" else
                   "hold out more documents (data.val_fraction, or the recipe's val_fraction for shards)")
            raise ConfigError(f"data.seq_len={seq_len}: the {kind} {name!r} holds {len(stream)} tokens, fewer than "
                              f"one evaluation window of seq_len+1; lower data.seq_len to at most "
                              f"{max(len(stream) - 1, 0)} or {fix}")


def output_dirs(cfg: Any, run_dir: Path) -> Dict[str, Path]:
    """What each directory a run writes is for, and its path."""
    dirs = {"metrics and config": run_dir, "checkpoints": checkpoint_root(run_dir)}
    if cfg.trainer.export_hf:
        dirs["the exported model"] = run_dir / "hf"
    return dirs


def _existing(path: Path) -> Path:
    """The path itself if it exists, else its nearest existing ancestor (what mkdir would write into)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_problem(path: Path) -> Optional[str]:
    """Why files cannot be created in ``path`` (or, if it does not exist yet, in the folder that would hold
    it), or None. Tries a temporary file, so read-only mounts and permissions count, root or not."""
    existing = _existing(path)
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".nexus_write_check_"):
            pass
    except OSError as error:
        return f"cannot create files in {existing} ({error.strerror or error})"
    return None


def check_writable(cfg: Any, run_dir: Path) -> None:
    """ConfigError naming trainer.run_dir if the run, checkpoint or export directory cannot be written."""
    for purpose, path in output_dirs(cfg, run_dir).items():
        problem = writable_problem(path)
        if problem:
            raise ConfigError(f"trainer.run_dir={run_dir}: {problem}, so {purpose} ({path}) could not be saved; "
                              "choose a writable trainer.run_dir")


def checkpoint_bytes(n_params: int, optim_cfg: Any) -> int:
    """About how many bytes one checkpoint takes: fp32 weights and the outer optimizer's fp32 state."""
    outer = optim_cfg.outer if optim_cfg.name == "nexus" else optim_cfg.name
    return n_params * FP32_BYTES * (1 + OPTIMIZER_STATE_COPIES.get(outer, 2))


def warn_if_disk_short(run_dir: Path, n_params: int, optim_cfg: Any) -> None:
    """PreflightWarning if the checkpoint directory's disk has less free space than one checkpoint needs."""
    folder = _existing(checkpoint_root(run_dir))
    need, free = checkpoint_bytes(n_params, optim_cfg), shutil.disk_usage(folder).free
    if free < need:
        warnings.warn(f"{folder}: {free / 2**30:.2f} GiB free, but one checkpoint takes about {need / 2**30:.2f} GiB "
                      f"({n_params:,} parameters, fp32 weights and optimizer state); free space or choose another "
                      "trainer.run_dir before the first checkpoint", PreflightWarning, stacklevel=3)


def check_token_ids(data_cfg: Any, data: RunData, vocab: int) -> None:
    """ValueError naming the domain, split and offset of the first token id >= vocab in an in-memory stream
    (embedded corpus, cached tokens). Memory-mapped shards are read by data/verify.py instead."""

    train = [("training split of domain", name, s) for name, s in getattr(data.sampler, "streams", {}).items()]
    for kind, name, stream in train + _held_out(data):
        if not isinstance(stream, np.ndarray) or isinstance(stream, np.memmap) or not len(stream):
            continue
        if int(stream.max()) >= vocab:
            offset = int(np.argmax(stream >= vocab))
            raise ValueError(f"data.source={data_cfg.source}: the {kind} {name!r} has token id "
                             f"{int(stream[offset])} at offset {offset}, outside the tokenizer's {vocab} ids; the cached "
                             f"tokens are corrupt or from another tokenizer: delete {default_cache_dir()} and start again")


def inner_step_ratio(optim_cfg: Any, model: torch.nn.Module) -> Optional[float]:
    """One inner step's displacement per weight relative to the rms of ``model``'s weight matrices (see
    optim.inner_step), or None when the optimizer takes no inner steps of a fixed length."""
    length = optimizer_traits(optim_cfg).inner_step_length
    return None if length is None else step_ratio(length, *weight_scale(model.parameters()))


def warn_if_fp8_hides_inner_steps(ratio: Optional[float], fp8_layers: List[str], inner_lr: float) -> None:
    """Warn when FP8 layers compute the forward and each inner step moves the weights by less than
    FP8_VISIBLE_STEP_RATIO of their rms: FP8 rounding then hides most of Nexus's alignment term."""
    if ratio is None or not fp8_layers or ratio >= FP8_VISIBLE_STEP_RATIO:
        return
    warnings.warn(f"optim.inner_lr={inner_lr:g} moves each weight by {ratio:.1e} of the weights' rms per inner step, "
                  f"and {len(fp8_layers)} layers compute in FP8 (model.float8): on small models FP8 forwards kept little "
                  "of Nexus's alignment term at 1e-4 and below (docs/performance-fp8.md, 'Nexus under FP8'); compare "
                  "with optim.variant=parallel at the same precision, or set model.float8=false",
                  PreflightWarning, stacklevel=2)


def warn_if_data_repeats(cfg: Any, data: RunData) -> None:
    """PreflightWarning naming the pretraining domains that trainer.max_steps would repeat more than
    REPEATED_EPOCHS times (fine-tuning runs, data.source=sft, repeat their examples by design)."""
    if cfg.data.source == "sft":
        return
    total = cfg.trainer.max_steps * cfg.trainer.global_batch * cfg.data.seq_len
    many = repeated(planned_epochs(data.sampler.weights, data.sampler.train_tokens, total))
    if many:
        warnings.warn(f"data: trainer.max_steps={cfg.trainer.max_steps} would train on these domains' tokens this many "
                      f"times (epochs): {describe(many)}; past about {REPEATED_EPOCHS:g}, repeated tokens are worth "
                      "less than fresh ones (Muennighoff et al. 2023), unlike the paper's runs, which see each token "
                      "about once: add data (docs/own-data.md) or shorten the run, or state the epochs with the "
                      "result (logged as epochs/<domain>)", PreflightWarning, stacklevel=3)
