"""A run never resumes into the wrong state: resume checks what the run is, one run per directory,
sealed checkpoints with fallback, metrics that survive crashes, one-line errors on a full disk."""

import errno
import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as torch_dcp
from omegaconf import OmegaConf

from nexus_pretrain.cli import export
from nexus_pretrain.config import BackendConfig, OptimConfig
from nexus_pretrain.demo import compose_config
from nexus_pretrain.errors import RunError
from nexus_pretrain.optim.build import build_optimizer
from nexus_pretrain.rundir.metrics_file import final_metrics, read_metrics, records_by_step
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train import manifest, run_identity
from nexus_pretrain.train.backends import dcp
from nexus_pretrain.train.backends.single import SingleDevice
from nexus_pretrain.train.init_weights import pretrained_state
from nexus_pretrain.train.metrics import MetricsLogger
from nexus_pretrain.train.trainer import Trainer

from .test_robustness import SMALL


def logged(caplog) -> str:
    """The messages logged since the last call (warnings are log records of the package's loggers)."""
    text = "\n".join(record.getMessage() for record in caplog.records)
    caplog.clear()
    return text


WHOLE_STEP_SCHEDULE = ["schedule.warmup_steps=2", "schedule.decay_steps=2"]


def config(run_dir: Path, *overrides: str):
    return compose_config([*SMALL, *WHOLE_STEP_SCHEDULE, f"trainer.run_dir={run_dir}", *overrides])


def write_checkpoints(run_dir: Path, cfg, steps=(2,), keep_last=5) -> list:
    """Real checkpoints (DCP, RNG, meta with the run config, manifest) of a tiny model, as the trainer writes them."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = build_optimizer(OptimConfig(name="adamw", lr=0.1), model)
    checkpointer = ckpt.Checkpointer(run_dir, SingleDevice(BackendConfig(device="cpu")), keep_last)
    meta = {"domain_tokens": {}, "config": run_identity.resolved(cfg)}
    return [checkpointer.save(step, model, optimizer, meta) for step in steps]


def metric_rows(steps) -> str:
    return "".join(json.dumps({"step": s, "loss": 5.0 - s}) + "\n" for s in steps)


def one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


def tree(run_dir: Path) -> dict:
    """Every file under a directory with its bytes."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ 1. resume checks what the run is
def test_resume_with_another_run_config_is_refused_listing_every_difference(tmp_path):
    run = tmp_path / "run"
    write_checkpoints(run, config(run))
    (run / "metrics.jsonl").write_text(metric_rows([1, 2]))
    before = tree(run)
    changed = config(run, "optim=adamw", "trainer.global_batch=8", "data.seq_len=32", "trainer.seed=3",
                     "data.domains.web=2.0", "model.dim=64", "schedule.decay_steps=3", "trainer.resume=auto")
    with pytest.raises(RunError) as error:
        run_identity.prepare_start(changed, world_size=1)
    message = one_line(error)
    for difference in ("optim.name: nexus -> adamw", "trainer.global_batch: 4 -> 8", "data.seq_len: 16 -> 32",
                       "trainer.seed: 0 -> 3", 'data.domains: {"web":1.0,"math":1.0,"code":1.0} -> '
                       '{"web":2.0,"math":1.0,"code":1.0}', "model.dim: 32 -> 64", "schedule.decay_steps: 2.0 -> 3.0"):
        assert difference in message
    assert "trainer.allow_config_change=[" in message and "optim.name" in message.split("allow_config_change=")[1]
    assert tree(run) == before  # nothing moved, truncated or recorded


def test_operational_changes_resume_with_a_warning_and_a_record(tmp_path, caplog):
    run = tmp_path / "run"
    (checkpoint,) = write_checkpoints(run, config(run, "trainer.max_steps=6"))
    changed = config(run, "trainer.max_steps=10", "trainer.log_every=5", "trainer.micro_batch=1",
                     "data.num_workers=1", "logging.jsonl=false", "trainer.resume=auto")
    assert run_identity.prepare_start(changed, world_size=1) == checkpoint
    warning = logged(caplog)
    assert warning.startswith(f"warning: resuming {checkpoint} with changed settings: ")
    for difference in ("trainer.max_steps: 6 -> 10", "trainer.log_every: 1 -> 5", "trainer.micro_batch: 2 -> 1",
                       "data.num_workers: 0 -> 1", "logging.jsonl: true -> false"):
        assert difference in warning
    (record,) = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and record["operational"]["trainer.max_steps"] == [6, 10]


def test_a_deliberate_change_resumes_and_is_recorded_while_config_yaml_never_changes_silently(tmp_path, caplog):
    run = tmp_path / "run"
    Trainer(config(run, "trainer.max_steps=4", "trainer.checkpoint_every=2")).fit(until_step=2)
    saved_config = (run / "config.yaml").read_text()
    with pytest.raises(RunError, match=r"optim.lr: 0.003 -> 0.001; .*allow_config_change=\[optim.lr\]"):
        Trainer(config(run, "trainer.max_steps=4", "optim.lr=0.001", "trainer.resume=auto")).fit()
    assert (run / "config.yaml").read_text() == saved_config  # still says what the run is
    caplog.clear()
    final = Trainer(config(run, "trainer.max_steps=4", "optim.lr=0.001", "trainer.resume=auto",
                           "trainer.allow_config_change=[optim.lr]")).fit()
    assert final["resumed_from"] == 2
    assert "allowed by trainer.allow_config_change: optim.lr: 0.003 -> 0.001" in logged(caplog)
    (record,) = [json.loads(line) for line in (run / "config_changes.jsonl").read_text().splitlines()]
    assert record["allowed_by_trainer_allow_config_change"] == {"optim.lr": [0.003, 0.001]} and record["step"] == 2
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == [1, 2, 3, 4]


def test_allow_config_change_must_name_config_keys(tmp_path):
    run = tmp_path / "run"
    write_checkpoints(run, config(run))
    with pytest.raises(RunError, match="trainer.allow_config_change: optim.learning_rate is no config key"):
        run_identity.prepare_start(config(run, "trainer.resume=auto", "trainer.allow_config_change=[optim.learning_rate]"), 1)


# ------------------------------------------------------------------ 2. one run per directory
def test_a_fresh_run_in_a_directory_holding_another_run_is_refused_and_changes_nothing(tmp_path):
    run = tmp_path / "run"
    Trainer(config(run, "trainer.max_steps=4", "trainer.checkpoint_every=1")).fit(until_step=2)
    before = tree(run)
    with pytest.raises(RunError) as error:
        Trainer(config(run, "trainer.max_steps=4", "optim=adamw")).fit()  # trainer.resume=never
    assert one_line(error) == (f"trainer.run_dir={run} already holds a run (2 checkpoint(s) up to step_00000002, "
                               "metrics.jsonl); start this run in a new trainer.run_dir, or continue that one with "
                               "trainer.resume=auto")
    assert tree(run) == before


def test_resume_auto_without_checkpoints_restarts_only_its_own_run(tmp_path, caplog):
    """A run that stopped before its first checkpoint restarts from step 0 under resume=auto; the same
    directory under another config is another run's."""
    run = tmp_path / "run"
    cfg = config(run, "trainer.resume=auto")
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(run_identity.resolved(cfg)))
    (run / "metrics.jsonl").write_text(metric_rows([1, 2, 3]) + '{"step": 4, "lo')
    with pytest.raises(RunError, match=r"holds another run \(metrics.jsonl; its config.yaml differs: optim.name: "
                                       r"nexus -> adamw\) and no checkpoint to resume"):
        run_identity.prepare_start(config(run, "trainer.resume=auto", "optim=adamw"), 1)
    with pytest.raises(RunError, match="already holds a run"):
        run_identity.prepare_start(config(run), 1)
    assert run_identity.prepare_start(cfg, 1) is None
    assert (run / "metrics.jsonl").read_text() == ""  # restarted from step 0: its rows are logged again
    assert "dropped 3 record(s) after step 0" in logged(caplog)


def test_resuming_another_directory_s_checkpoint_needs_a_directory_of_its_own(tmp_path):
    source, busy, fresh = tmp_path / "source", tmp_path / "busy", tmp_path / "fresh"
    (checkpoint,) = write_checkpoints(source, config(source))
    busy.mkdir()
    (busy / "metrics.jsonl").write_text(metric_rows([1]))
    with pytest.raises(RunError, match=f"trainer.run_dir={busy} already holds a run .*start this run from {checkpoint}"):
        run_identity.prepare_start(config(busy, f"trainer.resume={checkpoint}"), 1)
    assert run_identity.prepare_start(config(fresh, f"trainer.resume={checkpoint}"), 1) == checkpoint


# ------------------------------------------------------------------ 3. sealed checkpoints
def _shard(checkpoint: Path) -> Path:
    return max(checkpoint.glob("*.distcp"), key=lambda p: p.stat().st_size)


def _truncate(checkpoint: Path) -> None:
    shard = _shard(checkpoint)
    shard.write_bytes(shard.read_bytes()[:-100])


def _flip_a_byte(checkpoint: Path) -> None:  # same size: only the checksum can tell
    shard = _shard(checkpoint)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


def _delete_rng(checkpoint: Path) -> None:
    (checkpoint / "rng" / "rank_0.pt").unlink()


def _garble_meta(checkpoint: Path) -> None:
    (checkpoint / "meta.json").write_text("{ not json")


DAMAGE = {
    "truncated shard": (_truncate, r"__0_0.distcp is \d+ bytes, manifest.json says \d+"),
    "flipped byte": (_flip_a_byte, r"__0_0.distcp does not match its checksum in manifest.json"),
    "missing file": (_delete_rng, r"rng/rank_0.pt is missing"),
    "garbage meta.json": (_garble_meta, r"meta.json is 10 bytes, manifest.json says \d+"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_auto_falls_back_to_the_newest_intact_checkpoint_naming_the_damage(tmp_path, caplog, damage):
    run = tmp_path / "run"
    damage_fn, problem = DAMAGE[damage]
    first, second, newest = write_checkpoints(run, config(run), steps=(2, 4, 6))
    damage_fn(newest)
    (run / "metrics.jsonl").write_text(metric_rows(range(1, 8)))
    assert run_identity.prepare_start(config(run, "trainer.resume=auto"), 1) == second
    err = logged(caplog)
    assert "resuming from step_00000004 instead of step_00000006 (damaged: " in err
    assert re.search(problem, err)
    assert [p.name for p in ckpt.step_dirs(run)] == ["step_00000002", "step_00000004"]
    assert (ckpt.checkpoint_root(run) / "superseded" / "step_00000006").is_dir()  # set aside, not deleted
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]


def test_the_manifest_names_the_damaged_block_of_a_large_file(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "BLOCK", 1024)  # blocks hash in parallel; a small block stands for 32 MiB
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "shard").write_bytes(bytes(range(256)) * 20)  # 5120 bytes: 5 blocks
    (tmp_path / "meta.json").write_text("{}")
    manifest.write_manifest(tmp_path)
    monkeypatch.setattr(manifest, "BLOCK", 4096)  # the manifest's own block size is the one checked
    assert manifest.manifest_problem(tmp_path) is None
    data = bytearray((tmp_path / "sub" / "shard").read_bytes())
    data[3000] ^= 1
    (tmp_path / "sub" / "shard").write_bytes(bytes(data))
    assert manifest.manifest_problem(tmp_path) == "sub/shard does not match its checksum in manifest.json (bytes " \
                                                  "2048-3072 differ)"


def test_an_explicit_damaged_checkpoint_is_a_one_line_error_with_its_path(tmp_path):
    run = tmp_path / "run"
    (checkpoint,) = write_checkpoints(run, config(run))
    _flip_a_byte(checkpoint)
    with pytest.raises(ckpt.CheckpointError) as error:
        run_identity.prepare_start(config(tmp_path / "new", f"trainer.resume={checkpoint}"), 1)
    assert one_line(error).startswith(f"checkpoint {checkpoint} is damaged: __0_0.distcp does not match its checksum")


def test_every_checkpoint_damaged_stops_resume_auto_instead_of_starting_over(tmp_path):
    run = tmp_path / "run"
    for checkpoint in write_checkpoints(run, config(run), steps=(2, 4)):
        _truncate(checkpoint)
    with pytest.raises(ckpt.CheckpointError, match=f"no intact checkpoint in {ckpt.checkpoint_root(run)}: "
                                                   "step_00000004 \\(damaged: .*\\); step_00000002 \\(damaged: "):
        run_identity.prepare_start(config(run, "trainer.resume=auto"), 1)


def test_export_init_from_and_resume_verify_the_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(config(run, "trainer.max_steps=4", "trainer.checkpoint_every=1")).fit(until_step=2)
    good, damaged = ckpt.step_dirs(run)
    _flip_a_byte(damaged)
    with pytest.raises(SystemExit):
        export([str(damaged), str(tmp_path / "hf")])
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: checkpoint {damaged} is damaged: __0_0.distcp does not match "
                                              "its checksum in manifest.json")
    with pytest.raises(ckpt.CheckpointError, match=f"checkpoint {damaged} is damaged"):
        pretrained_state(damaged)
    export([str(run), str(tmp_path / "hf")])  # a run directory: its newest intact checkpoint
    out = capsys.readouterr()
    assert "resuming from step_00000001 instead of step_00000002" in out.err and f"exported {good}" in out.out
    assert pretrained_state(run).keys() == pretrained_state(good).keys()
    final = Trainer(config(run, "trainer.max_steps=4", "trainer.resume=auto")).fit(until_step=2)
    assert final["resumed_from"] == 1


def test_checkpoints_from_before_manifests_load_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    (checkpoint,) = write_checkpoints(run, config(run))
    (checkpoint / "manifest.json").unlink()
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
               checkpoint / "rng" / "rank_0.pt")  # the NumPy-array form RNG files had then
    assert run_identity.prepare_start(config(run, "trainer.resume=auto"), 1) == checkpoint
    assert "has no manifest.json (written before checkpoints were sealed); loading it unverified" in logged(caplog)
    state = ckpt.load_rng_file(checkpoint / "rng" / "rank_0.pt")  # weights_only=True
    ckpt.set_rng_state(state)
    assert np.random.get_state()[1].dtype == np.uint32


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_checkpoint_state_loads_weights_only(tmp_path):
    """RNG files and DCP's non-tensor entries may hold data and tensors, never objects that run code."""
    run = tmp_path / "run"
    (checkpoint,) = write_checkpoints(run, config(run))
    assert isinstance(ckpt.load_rng_file(checkpoint / "rng" / "rank_0.pt")["numpy"][1], torch.Tensor)
    torch.save({"python": _Payload()}, tmp_path / "rng.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        ckpt.load_rng_file(tmp_path / "rng.pt")
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(OptimConfig(name="adamw"), model)
    dcp.materialize_optimizer_state(optimizer)
    state = dcp.app_state(model, optimizer)
    state["optimizer"]["outer"]["param_groups"][0]["lr"] = _Payload()
    torch_dcp.save(state, checkpoint_id=str(tmp_path / "hostile"), no_dist=True)
    with pytest.raises(BaseException, match="Weights only load failed"):
        dcp.load(tmp_path / "hostile", model, optimizer)


# ------------------------------------------------------------------ 6. metrics that survive crashes
def test_after_a_resume_each_step_is_logged_once(tmp_path):
    run = tmp_path / "run"
    Trainer(config(run, "trainer.max_steps=4", "trainer.checkpoint_every=2")).fit(until_step=3)
    shutil.rmtree(ckpt.checkpoint_root(run) / "step_00000003")  # the crash came before step 3's checkpoint
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "loss": 4.')  # ... and in the middle of a line
    Trainer(config(run, "trainer.max_steps=4", "trainer.checkpoint_every=2", "trainer.resume=auto")).fit()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4]


def test_readers_skip_a_torn_last_line_and_name_file_and_line_of_a_bad_one(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(metric_rows([1, 2]) + '{"step": 3, "loss": 1.')
    assert final_metrics(run) == {"step": 2, "loss": 3.0}
    (run / "metrics.jsonl").write_text(metric_rows([1]) + "garbage\n" + metric_rows([2]))
    with pytest.raises(ValueError, match=f"^{run / 'metrics.jsonl'}:2: not a metrics record"):
        final_metrics(run)


def test_readers_keep_the_resumed_rows_of_files_written_before_truncation(tmp_path):
    path = tmp_path / "metrics.jsonl"
    resumed = [json.dumps({"step": s, "loss": 10.0 + s}) + "\n" for s in (3, 4)]
    path.write_text(metric_rows([1, 2, 3, 4]) + json.dumps({"step": 4, "val/pretrain": 2.0}) + "\n" + "".join(resumed))
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 4.0), (2, 3.0), (3, 13.0), (4, 14.0)]


# ------------------------------------------------------------------ a full disk
def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = config(run)
    (previous,) = write_checkpoints(run, cfg, steps=(2,))
    for where in ("torch.save", "manifest"):  # in the backend's/RNG write, then while sealing
        if where == "torch.save":
            monkeypatch.setattr(torch, "save", _no_space)
        else:
            monkeypatch.setattr(ckpt.manifest, "write_manifest", _no_space)
        with pytest.raises(RunError) as error:
            write_checkpoints(run, cfg, steps=(4,))
        monkeypatch.undo()
        assert one_line(error) == (f"writing checkpoint {ckpt.checkpoint_root(run) / 'step_00000004'} failed: No space "
                                   f"left on device [ENOSPC]; the previous checkpoint {previous} is intact; free space "
                                   "(or fix the directory) and continue with trainer.resume=auto")
        assert ckpt.latest_valid_checkpoint(run) == previous
        assert not (ckpt.checkpoint_root(run) / ".tmp_step_00000004").exists()  # its space is given back


def test_a_full_disk_while_logging_is_one_line_naming_the_file(tmp_path):
    from types import SimpleNamespace

    cfg = SimpleNamespace(jsonl=True, progress_bar=False, wandb=False, tensorboard=False)
    logger = MetricsLogger(cfg, tmp_path, total_steps=2)
    logger.log(1, {"loss": 2.0})

    class FullDisk:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    logger._jsonl = FullDisk()
    with pytest.raises(RunError) as error:
        logger.log(2, {"loss": 1.0})
    assert one_line(error).startswith(f"writing metrics to {tmp_path / 'metrics.jsonl'} failed: No space left on "
                                      "device [ENOSPC]; free space")
    logger.close()
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 2.0}]


def test_records_by_step_merges_each_steps_rows_in_step_order(tmp_path):
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "val/pretrain": 2.7}, {"step": 3, "loss": 2.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert records_by_step(tmp_path) == {1: {"step": 1, "loss": 3.0}, 2: {"step": 2, "loss": 2.5, "val/pretrain": 2.7},
                                         3: {"step": 3, "loss": 2.0}}
    assert list(records_by_step(tmp_path)) == [1, 2, 3]
