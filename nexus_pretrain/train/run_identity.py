"""What a run *is*, and which run a directory belongs to.

A run is defined by its config minus the operational settings (:data:`OPERATIONAL`: length, intervals,
logging, workers, placement, compile, micro-batch size). Resuming a checkpoint under a config that
changes anything else (model shape, tokenizer, optimizer and its hyperparameters, data mixture and
sequence length, seed, global batch, schedule) is refused in one line listing every difference, unless
the user names those keys in ``trainer.allow_config_change``; such a deliberate change is recorded in
``RUN_DIR/config_changes.jsonl``. Operational changes are allowed, printed and recorded there too.

A run directory holds one run: a fresh start in a directory that holds another run's checkpoints or
metrics is refused, so nothing of that run is deleted, interleaved or later resumed by mistake.

:func:`prepare_start` applies both rules on the main rank before the trainer loads anything: it picks the
checkpoint (verified, falling back to the newest intact one under trainer.resume=auto), sets aside
checkpoints newer than it, and truncates metrics.jsonl to its step so that every step is logged once.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
from omegaconf import OmegaConf

from nexus_pretrain.config import TrainConfig
from nexus_pretrain.errors import RunError
from nexus_pretrain.rundir.metrics_file import METRICS_FILE, truncate_metrics
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.backends.single import recorded_precision, resolve_device
from nexus_pretrain.train.schedule_change import longer_run_note, same_phase, schedule_change

OPERATIONAL = (
    "trainer.max_steps", "trainer.micro_batch", "trainer.run_dir", "trainer.resume", "trainer.log_every",
    "trainer.eval_every", "trainer.checkpoint_every", "trainer.keep_last", "trainer.skip_nonfinite",
    "trainer.compile", "trainer.activation_checkpointing", "trainer.activation_checkpointing_every",
    "trainer.deterministic", "trainer.export_hf", "trainer.init_from", "trainer.allow_config_change",
    "data.num_workers", "data.sft.num_proc", "model.attention", "model.float8_cache_weights", "optim.fused",
    "optim.offload_anchor",
    "backend.name", "backend.device", "backend.dist_backend", "backend.zero_stage", "backend.cpu_offload",
    "backend.replicate", "backend.reshard_after_forward", "backend.async_checkpoint", "backend.timeout_minutes",
    "logging.",
)
"""The config keys (or, ending in '.', sections) a resumed run may change: they change how the run is
executed or recorded, not what it computes (kernels, placement, parallelism, intervals, sinks). Every
other key, present or future, is part of what the run is (backend.precision and model.float8 too: they
change the numbers). trainer.max_steps is operational as long as the learning rate of the steps already
taken stays the same, and a phase length as long as it comes to the same number of steps
(train/schedule_change.py)."""

def _micro_steps_per_step(leaves: Dict[str, Any], world_size: int) -> int:
    return leaves["trainer.global_batch"] // (leaves["trainer.micro_batch"] * world_size)


ABSENT_MEANT: Dict[str, Any] = {
    "model.residual_dtype": "embedding",
    "model.float8_head": False,
    "model.float8_fast_accum": False,
    "optim.inner_steps": _micro_steps_per_step,
}
"""Keys added to the config after runs were saved without them, where their absence in such a run's
config meant something other than today's default (a value, or a function of the old run's other
settings and its world size): before these keys existed, the residual stream kept the embedding's dtype,
FP8 runs kept the output head in bf16 and accumulated the backward matmuls exactly, and Nexus took one
inner step per micro-batch, K = global batch / (micro-batch x ranks)."""

AUTO_MEANT: Dict[str, Any] = {
    "backend.precision": lambda leaves: recorded_precision("auto", resolve_device(leaves["backend.device"])),
}
"""Keys a run records resolved (auto as what it did, see trainer.Trainer), mapped to what a saved auto stood
for: in a config saved before runs recorded them, auto is read as what it means on the resuming machine,
as every resume then assumed. model.float8 is not here: what its auto did depends on the model and the
GPU, so a run saved with it is refused until the change is accepted (check_resume says so)."""

FLOAT8_DETAIL = "model.float8_"
"""The FP8 settings (recipe, threshold, head, accumulation): they change nothing while model.float8 is
false before and after, so a bf16 run resumes whatever they say."""

CHANGES_FILE = "config_changes.jsonl"
OVERRIDE_KEY = "trainer.allow_config_change"
NOT_REPORTED = ("trainer.resume", OVERRIDE_KEY)  # differ by design; the override is recorded on its own

Change = Tuple[str, Any, Any]


def is_operational(key: str) -> bool:
    """Whether a resumed run may change config key ``key`` (dotted) without an override."""
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in OPERATIONAL)


def _leaves(defaults: Any, values: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Dotted key -> value of every field of a config dataclass instance (sections recursed), taken from
    ``values`` (a resolved config dict, possibly older: missing keys take the default, unknown keys are left out)."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(defaults):
        key = f"{prefix}{f.name}"
        default = getattr(defaults, f.name)
        value = values.get(f.name, default) if isinstance(values, dict) else default
        if dataclasses.is_dataclass(default):
            out.update(_leaves(default, value if isinstance(value, dict) else {}, key + "."))
        else:
            out[key] = value
    return out


def _has(config: Dict[str, Any], key: str) -> bool:
    for part in key.split("."):
        if not isinstance(config, dict) or part not in config:
            return False
        config = config[part]
    return True


def config_leaves(config: Dict[str, Any], world_size: Optional[int] = None) -> Dict[str, Any]:
    """Dotted key -> value of a resolved run config (as meta.json and config.yaml store it); a key the
    config lacks takes today's default, or what its absence meant (ABSENT_MEANT; one that depends on the
    run's world size keeps the default when ``world_size`` is None). An empty config (none recorded) is
    all defaults."""
    leaves = _leaves(TrainConfig(), config)
    for key, meant in ABSENT_MEANT.items():
        if not config or _has(config, key):
            continue
        if not callable(meant):
            leaves[key] = meant
        elif world_size is not None:
            leaves[key] = meant(leaves, world_size)
    return leaves


def resolved(cfg: TrainConfig) -> Dict[str, Any]:
    """The resolved config dict a run records (meta.json, config.yaml)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def config_changes(old: Dict[str, Any], new: Dict[str, Any], steps_taken: int,
                   old_world_size: Optional[int] = None) -> Tuple[List[Change], List[Change]]:
    """(identity changes, operational changes) from a checkpoint's resolved config (of a run on
    ``old_world_size`` ranks, when known) to a new one, as (key, old value, new value); a
    trainer.max_steps that changes the schedule of the steps already taken counts as an identity change,
    a phase length that comes to the same steps as an operational one."""
    a, b = config_leaves(old, old_world_size), config_leaves(new)
    for key, meant in AUTO_MEANT.items():
        if a[key] == "auto" and b[key] != "auto":
            a[key] = meant(b)
    identity, operational = [], []
    bf16_throughout = a["model.float8"] == b["model.float8"] == "false"
    for key in b:
        if _same(key, a[key], b[key]) or key in NOT_REPORTED or (bf16_throughout and key.startswith(FLOAT8_DETAIL)):
            continue
        (operational if is_operational(key) or same_phase(key, a, b) else identity).append((key, a[key], b[key]))
    if not any(key.startswith("schedule.") for key, _, _ in identity) and a["trainer.max_steps"] != b["trainer.max_steps"]:
        if schedule_change(a, b, steps_taken):
            operational = [c for c in operational if c[0] != "trainer.max_steps"]
            identity.append(("trainer.max_steps", a["trainer.max_steps"], b["trainer.max_steps"]))
    return identity, operational


def _same(key: str, a: Any, b: Any) -> bool:
    if a == b:
        return True
    if key == "trainer.run_dir" and a and b:  # one directory, named relative once and absolute once
        return Path(a).resolve() == Path(b).resolve()
    return False


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def describe(changes: List[Change]) -> str:
    """'key: old -> new' of each change, separated by '; '."""
    return "; ".join(f"{key}: {_show(old)} -> {_show(new)}" for key, old, new in changes)


def _allowed(key: str, allow: List[str]) -> bool:
    return any(key == entry or key.startswith(entry.rstrip(".") + ".") for entry in allow)


def check_resume(checkpoint: Path, meta: Dict[str, Any], cfg: TrainConfig,
                 world_size: int) -> Tuple[List[Change], List[Change]]:
    """(changes allowed by trainer.allow_config_change, operational changes) of resuming ``checkpoint``
    under ``cfg``; RunError listing every other change of what the run is."""
    new = resolved(cfg)
    keys = config_leaves(new)
    allow = list(cfg.trainer.allow_config_change)
    unknown = [e for e in allow if not any(_allowed(k, [e]) for k in keys)]
    if unknown:
        raise RunError(f"{OVERRIDE_KEY}: {unknown[0]} is no config key; list dotted keys such as optim.lr or "
                       "data.seq_len (`nexus-train --cfg job` shows them)")
    old = meta.get("config") or {}
    identity, operational = config_changes(old, new, int(meta["step"]), meta.get("world_size") or world_size)
    if meta.get("world_size") not in (None, world_size):
        operational.append(("world size", meta["world_size"], world_size))
    refused = [c for c in identity if not _allowed(c[0], allow)]
    if refused:
        keys_list = ",".join(key for key, _, _ in refused)
        note = longer_run_note(config_leaves(old), keys, int(meta["step"])) if any(
            key == "trainer.max_steps" for key, _, _ in refused) else ""
        if ("model.float8", "auto") in [(key, was) for key, was, _ in refused]:
            note += (" (the run was saved before runs recorded what model.float8=auto did; if it trained as "
                     "this one would, accept the change)")
        raise RunError(f"checkpoint {checkpoint} belongs to a run with another config: {describe(refused)}{note}; "
                       f"resume with the original values, start a new trainer.run_dir, or accept the change "
                       f"deliberately with {OVERRIDE_KEY}=[{keys_list}] (recorded in the run's {CHANGES_FILE})")
    return identity, operational


def record_changes(run_dir: Path, checkpoint: Path, step: int, allowed: List[Change],
                   operational: List[Change]) -> None:
    """Append one line to RUN_DIR/config_changes.jsonl for a resume that changed the config."""
    if not (allowed or operational):
        return
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "step": step, "checkpoint": str(checkpoint),
              "allowed_by_" + OVERRIDE_KEY.replace(".", "_"): {k: [a, b] for k, a, b in allowed},
              "operational": {k: [a, b] for k, a, b in operational}}
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / CHANGES_FILE, "a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def run_contents(run_dir: Path) -> List[str]:
    """What of a run a directory holds: its checkpoints (under their final names or set aside) and a
    non-empty metrics.jsonl."""
    found = []
    steps = ckpt.step_dirs(run_dir)
    if steps:
        found.append(f"{len(steps)} checkpoint(s) up to {steps[-1].name}")
    superseded = ckpt.checkpoint_root(run_dir) / ckpt.SUPERSEDED_DIR
    if superseded.is_dir() and any(superseded.iterdir()):
        found.append(f"checkpoints set aside in {superseded}")
    metrics = run_dir / METRICS_FILE
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append(METRICS_FILE)
    return found


def _same_run_restart(run_dir: Path, cfg: TrainConfig) -> Optional[str]:
    """Why the directory's run (no checkpoint, only metrics and config.yaml) is not this one, or None
    when its config.yaml describes this run (a restart from step 0 after a crash before the first checkpoint)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return "it has no config.yaml"
    try:
        old = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as error:  # noqa: BLE001 (OmegaConf raises several types on a bad file)
        return f"its config.yaml is unreadable ({type(error).__name__})"
    identity, _ = config_changes(old, resolved(cfg), 0)
    identity = [c for c in identity if not _allowed(c[0], list(cfg.trainer.allow_config_change))]
    return f"its config.yaml differs: {describe(identity)}" if identity else None


def claim_fresh_start(run_dir: Path, cfg: TrainConfig, checkpoint: Optional[Path]) -> bool:
    """Check that a run starting from step 0 (``checkpoint`` None) or from another directory's checkpoint
    may use ``run_dir``; True when it restarts this directory's own run from step 0 (trainer.resume=auto,
    nothing checkpointed yet). RunError naming the directory and the ways out otherwise."""
    found = run_contents(run_dir)
    if not found:
        return False
    what = ", ".join(found)
    if cfg.trainer.resume == "auto" and checkpoint is None and not ckpt.step_dirs(run_dir):
        other = _same_run_restart(run_dir, cfg)
        if other is None:
            return True
        raise RunError(f"trainer.run_dir={run_dir} holds another run ({what}; {other}) and no checkpoint to "
                       "resume; start this run in a new trainer.run_dir")
    source = f" from {checkpoint}" if checkpoint is not None else ""
    raise RunError(f"trainer.run_dir={run_dir} already holds a run ({what}); start this run{source} in a new "
                   "trainer.run_dir, or continue that one with trainer.resume=auto")


def choose_checkpoint(cfg: TrainConfig) -> Optional[Path]:
    """The checkpoint trainer.resume names (never: None; auto: the newest intact one of the run directory,
    or None; else that path), verified: CheckpointError naming the path when it is damaged."""
    resume = cfg.trainer.resume
    if resume == "never":
        return None
    if resume == "auto":
        return ckpt.latest_valid_checkpoint(cfg.trainer.run_dir)
    return ckpt.verify_checkpoint(Path(resume))


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().parent == folder.resolve()
    except OSError:
        return False


def prepare_start(cfg: TrainConfig, world_size: int) -> Optional[Path]:
    """On the main rank, before anything is loaded: the verified checkpoint to resume (None: start at step 0)
    after the config and run-directory checks, with checkpoints newer than it set aside and metrics.jsonl
    truncated to its step. Raises RunError (CheckpointError) with one line when the run cannot start as asked."""
    run_dir = Path(cfg.trainer.run_dir)
    checkpoint = choose_checkpoint(cfg)
    step, allowed, operational = 0, [], []
    if checkpoint is not None:
        meta = ckpt.read_meta(checkpoint)
        step = int(meta["step"])
        allowed, operational = check_resume(checkpoint, meta, cfg, world_size)
    if checkpoint is None or not _inside(checkpoint, ckpt.checkpoint_root(run_dir)):
        restart = claim_fresh_start(run_dir, cfg, checkpoint)
        if checkpoint is None and not restart:
            return None  # a new run in a directory of its own
    if checkpoint is not None:
        if allowed or operational:
            shown = "; ".join(part for part in (
                describe(operational), f"allowed by {OVERRIDE_KEY}: {describe(allowed)}" if allowed else "") if part)
            ckpt.warn(f"resuming {checkpoint} with changed settings: {shown} (recorded in {run_dir / CHANGES_FILE})")
        record_changes(run_dir, checkpoint, step, allowed, operational)
        moved = ckpt.set_aside_newer(run_dir, step)
        if moved:
            ckpt.warn(f"checkpoints after step {step} set aside in {moved[0].parent}: "
                      f"{', '.join(p.name for p in moved)} (not resumed from; delete them once unneeded)")
    dropped, unreadable = truncate_metrics(run_dir / METRICS_FILE, step)
    if dropped or unreadable:
        lines = f" and unreadable line(s) {', '.join(map(str, unreadable))}" if unreadable else ""
        ckpt.warn(f"{run_dir / METRICS_FILE}: dropped {dropped} record(s) after step {step}{lines} "
                  "(logged before the run stopped; they are logged again as it continues)")
    return checkpoint


def start_on_every_rank(cfg: TrainConfig, backend: Any) -> Optional[Path]:
    """prepare_start on the main rank, its answer shared with every rank (collective): the checkpoint to
    load, or None. When the main rank refuses, it raises its error and the other ranks a short one."""

    checkpoint, error = None, None
    if backend.is_main:
        try:
            checkpoint = prepare_start(cfg, backend.world_size)
        except Exception as e:  # noqa: BLE001 (raised below, after every rank has the verdict)
            error = e
    if backend.world_size > 1:
        code = -2 if error is not None else -1 if checkpoint is None else ckpt.read_meta(checkpoint)["step"]
        mine = torch.tensor(float(code if backend.is_main else 0), dtype=torch.float64, device=backend.device)
        code = round(float(backend.all_reduce_mean(mine)) * backend.world_size)
        if not backend.is_main:
            if code == -2:
                raise RunError("the main rank refused to start the run; its error says why")
            resume = cfg.trainer.resume
            checkpoint = None if code == -1 else Path(resume) if resume not in ("never", "auto") else \
                ckpt.checkpoint_root(cfg.trainer.run_dir) / f"step_{code:08d}"
    if error is not None:
        raise error
    return checkpoint
