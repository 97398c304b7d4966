"""Validation of a composed run configuration: values and cross-field constraints, checked once at start-up.

:func:`validate` only reads the config (each dataclass normalizes its values on construction, see
nexus_pretrain.config) and raises :class:`ConfigError` with one line naming the first bad key and the fix.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from nexus_pretrain.config import (ATTENTIONS, BACKENDS, DATA_SOURCES, DEVICES, DIST_BACKENDS, PRECISIONS, RESUME_MODES, SFT_OVERLONG, SFT_TEMPLATES, WANDB_MODES, SFTDataConfig, TrainConfig)
from nexus_pretrain.data.layout import MIXTURE_MODES, batch_layout
from nexus_pretrain.data.mixture import apply_fixed_shares
from nexus_pretrain.errors import ConfigError
from nexus_pretrain.model.float8 import FLOAT8_EVALS, FLOAT8_MODES, FLOAT8_RECIPES
from nexus_pretrain.model.presets import PRESETS, RESIDUAL_DTYPES
from nexus_pretrain.optim.schedule import DECAY_SHAPES, SCHEDULES, phase_steps, resolve_steps
from nexus_pretrain.optim.traits import NEXUS_VARIANTS, OPTIMIZERS, OUTER_OPTIMIZERS, optimizer_traits


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(key: str, value: Any, options: tuple) -> None:
    _require(value in options, f"{key}={value!r} is not one of {', '.join(map(str, options))}; set {key} to one of them")


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    bound = ">= 0" if allow_zero else "> 0"
    _require(ok, f"{key}={value} must be {bound}; set {key} to a {'non-negative' if allow_zero else 'positive'} value")


def validate(cfg: TrainConfig, world_size: int = 1) -> None:
    """Check values and cross-field constraints; raise ConfigError naming the first bad key. Reads only:
    ``cfg`` is left as it was given."""
    for section in fields(cfg):
        group = getattr(cfg, section.name)
        extra = sorted(set(vars(group)) - {f.name for f in fields(group)})
        _require(not extra, f"{section.name}.{extra[0] if extra else ''}: no such config key; remove it or fix "
                            "its spelling (`nexus-train --cfg job` lists every key)")
    m, o, s, d, b, t = cfg.model, cfg.optim, cfg.schedule, cfg.data, cfg.backend, cfg.trainer
    _choice("model.preset", m.preset, tuple(PRESETS))
    for key in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "vocab_size", "max_seq_len"):
        value = getattr(m, key)
        if value is not None:
            _positive(f"model.{key}", value)
    _choice("model.attention", m.attention, ATTENTIONS)
    if m.residual_dtype is not None:
        _choice("model.residual_dtype", m.residual_dtype, RESIDUAL_DTYPES)
    _choice("model.float8", m.float8, FLOAT8_MODES)
    _choice("model.float8_recipe", m.float8_recipe, FLOAT8_RECIPES)
    _choice("model.float8_eval", m.float8_eval, FLOAT8_EVALS)
    _choice("model.float8_cache_weights", m.float8_cache_weights, FLOAT8_MODES)
    if m.float8_min_dim is not None:
        _positive("model.float8_min_dim", m.float8_min_dim, allow_zero=True)

    _choice("optim.name", o.name, OPTIMIZERS)
    _positive("optim.lr", o.lr)
    _positive("optim.eps", o.eps)
    _positive("optim.weight_decay", o.weight_decay, allow_zero=True)
    _positive("optim.max_grad_norm", o.max_grad_norm, allow_zero=True)
    _require(len(o.betas) == 2 and all(0 <= x < 1 for x in o.betas),
             f"optim.betas={list(o.betas)} must be two numbers in [0, 1); e.g. optim.betas=[0.9,0.95]")
    _choice("optim.outer", o.outer, OUTER_OPTIMIZERS)
    _choice("optim.variant", o.variant, NEXUS_VARIANTS)
    _positive("optim.inner_lr", o.inner_lr)
    _positive("optim.inner_steps", o.inner_steps)
    _require(0 <= o.muon_momentum < 1, f"optim.muon_momentum={o.muon_momentum} must be in [0, 1)")
    _positive("optim.muon_ns_steps", o.muon_ns_steps)
    if o.muon_lr is not None:
        _positive("optim.muon_lr", o.muon_lr)

    _choice("schedule.name", s.name, SCHEDULES)
    _choice("schedule.decay_shape", s.decay_shape, DECAY_SHAPES)
    _require(0 <= s.min_lr_ratio <= 1, f"schedule.min_lr_ratio={s.min_lr_ratio} must be in [0, 1]")
    _positive("trainer.max_steps", t.max_steps)
    try:
        warmup, decay = phase_steps(s, t.max_steps)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _require(warmup + decay <= t.max_steps,
             f"schedule.warmup_steps={s.warmup_steps:g} ({warmup} steps) + decay_steps={s.decay_steps:g} ({decay} "
             f"steps) exceed trainer.max_steps={t.max_steps}; give them as fractions (e.g. schedule.warmup_steps=0.1 "
             "schedule.decay_steps=0.3) or raise trainer.max_steps" if s.name == "wsd" else
             f"schedule.warmup_steps={s.warmup_steps:g} ({warmup} steps) exceeds trainer.max_steps={t.max_steps}; "
             "give it as a fraction (e.g. schedule.warmup_steps=0.1) or raise trainer.max_steps")

    _choice("data.source", d.source, DATA_SOURCES)
    _require(len(d.domains) > 0, "data.domains is empty; list at least one domain with a weight")
    for name, weight in d.domains.items():
        _require(weight >= 0, f"data.domains.{name}={weight} must be >= 0; use a non-negative weight")
    _require(sum(d.domains.values()) > 0, "data.domains weights sum to 0; give some domain a positive weight")
    _positive("data.num_workers", d.num_workers, allow_zero=True)
    _require(d.source != "shards" or bool(d.path),
             "data.path is not set; with data.source=shards set it to the --out folder of nexus-data prepare")
    try:
        weights = apply_fixed_shares(d.domains, d.fixed_shares) if d.fixed_shares else d.domains
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _positive("data.seq_len", d.seq_len)
    if d.source == "sft":
        _validate_sft(d.sft)
    _choice("data.microbatch_domains", d.microbatch_domains, MIXTURE_MODES)
    trained = [name for name, w in weights.items() if w > 0]
    _require(d.microbatch_domains != "per_domain" or o.inner_steps % len(trained) == 0,
             f"data.microbatch_domains=per_domain cycles the {len(trained)} domains over the inner batches, but "
             f"optim.inner_steps={o.inner_steps} is not a multiple of {len(trained)}; set optim.inner_steps to one")
    _require(0 < d.val_fraction < 1, f"data.val_fraction={d.val_fraction} must be in (0, 1)")
    _positive("data.eval_sequences", d.eval_sequences)
    if m.max_seq_len is not None:
        _require(d.seq_len <= m.max_seq_len,
                 f"data.seq_len={d.seq_len} exceeds model.max_seq_len={m.max_seq_len}; raise model.max_seq_len")

    _choice("backend.name", b.name, BACKENDS)
    _choice("backend.device", b.device, DEVICES)
    _choice("backend.precision", b.precision, PRECISIONS)
    _choice("backend.dist_backend", b.dist_backend, DIST_BACKENDS)
    _choice("backend.zero_stage", b.zero_stage, (1, 2, 3))
    _positive("backend.replicate", b.replicate)
    _require(world_size % b.replicate == 0,
             f"backend.replicate={b.replicate} does not divide the world size {world_size}")
    _positive("backend.timeout_minutes", b.timeout_minutes)
    _require(not (b.name == "deepspeed" and m.float8 == "true"),
             "model.float8=true with backend.name=deepspeed is not supported (ZeRO's flattened bf16 parameters "
             "bypass torchao's FP8 linears); use backend.name=fsdp2 or single, or model.float8=false")
    _require(not (m.float8_cache_weights == "true" and b.name != "single"),
             f"model.float8_cache_weights=true with backend.name={b.name}: sharded weights are gathered anew for "
             "every forward, so there is no FP8 weight to keep; use backend.name=single or "
             "model.float8_cache_weights=auto")
    _require(not (m.float8_cache_weights == "true" and m.float8_recipe != "tensorwise"),
             f"model.float8_cache_weights=true with model.float8_recipe={m.float8_recipe}: only a tensorwise "
             "weight cast serves both matmuls that take it; use model.float8_recipe=tensorwise or "
             "model.float8_cache_weights=auto")
    _require(not (b.name == "deepspeed" and optimizer_traits(o).needs_whole_matrices),
             "optim muon with backend.name=deepspeed: ZeRO flattens parameters, so Muon's per-matrix "
             "orthogonalization is not available there; use backend.name=fsdp2")

    _positive("trainer.global_batch", t.global_batch)
    _positive("trainer.micro_batch", t.micro_batch)
    try:
        batch_layout(t.global_batch, o.inner_steps, world_size, t.micro_batch)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for key in ("log_every",):
        _positive(f"trainer.{key}", getattr(t, key))
    for key in ("eval_every", "checkpoint_every"):
        _positive(f"trainer.{key}", getattr(t, key), allow_zero=True)
    _positive("trainer.keep_last", t.keep_last)
    if t.cooldown_from:
        _require(s.name == "wsd", f"trainer.cooldown_from needs schedule=wsd (a stable phase to branch from), "
                                  f"not schedule.name={s.name}; use schedule=wsd or drop trainer.cooldown_from")
        warmup, decay = phase_steps(s, t.max_steps)
        for value in t.cooldown_from:
            try:
                step = resolve_steps(value, t.max_steps, "trainer.cooldown_from")
            except ValueError as error:
                raise ConfigError(str(error)) from None
            _require(warmup <= step <= t.max_steps - decay and step > 0,
                     f"trainer.cooldown_from={value} is step {step}, outside the stable phase (steps {max(warmup, 1)}.."
                     f"{t.max_steps - decay}); branch from a step between the warmup and the decay")
    if t.eval_task_limit is not None:
        _positive("trainer.eval_task_limit", t.eval_task_limit)
    _require(not t.eval_tasks or bool(t.eval_data_dir),
             "trainer.eval_tasks needs trainer.eval_data_dir: the folder of local benchmark files (nexus-eval --data-dir)")
    _positive("trainer.activation_checkpointing_every", t.activation_checkpointing_every)
    _positive("trainer.skip_nonfinite", t.skip_nonfinite, allow_zero=True)
    _require(not (b.name == "deepspeed" and t.skip_nonfinite > 0),
             "trainer.skip_nonfinite with backend.name=deepspeed is not supported (the engine's step has already "
             "changed the weights when the loss is checked); set trainer.skip_nonfinite=0")
    _require(t.resume in RESUME_MODES or Path(t.resume).is_dir(),
             f"trainer.resume={t.resume!r} is neither never, auto nor an existing checkpoint directory")
    _require(t.init_from is None or Path(t.init_from).exists(),
             f"trainer.init_from={t.init_from!r} does not exist; give a checkpoint, run or Hugging Face model directory")
    _positive("logging.cosine_every", cfg.logging.cosine_every, allow_zero=True)
    _choice("logging.wandb_mode", cfg.logging.wandb_mode, WANDB_MODES)


def _validate_sft(sft: SFTDataConfig) -> None:
    _require(bool(sft.dataset), "data.sft.dataset is not set; with data.source=sft give a hub dataset name, a local "
                                ".jsonl/.parquet file or embedded_math")
    _choice("data.sft.template", sft.template, SFT_TEMPLATES)
    _choice("data.sft.overlong", sft.overlong, SFT_OVERLONG)
    for key in ("split", "messages_field", "prompt_field", "response_field"):
        _require(bool(getattr(sft, key)), f"data.sft.{key} is empty; name a split/column")
    if sft.max_examples is not None:
        _positive("data.sft.max_examples", sft.max_examples)
    if sft.num_proc is not None:
        _positive("data.sft.num_proc", sft.num_proc)
