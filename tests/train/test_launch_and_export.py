"""Launch plumbing (Slurm environment, the Slurm launcher config, scripts/launch.sh) and checkpoint export."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from nexus_pretrain.cli import export
from nexus_pretrain.demo import compose_config
from nexus_pretrain.train import checkpoint as ckpt
from nexus_pretrain.train.backends.launch_env import TORCHRUN_KEYS, export_launcher_env
from nexus_pretrain.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]


def test_slurm_task_environment_becomes_torchrun_environment(monkeypatch):
    for key in TORCHRUN_KEYS:  # set, then delete: monkeypatch then restores (removes) what the call exports
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
             "SLURM_JOB_NODELIST": "gpu017"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    export_launcher_env()
    assert {k: os.environ[k] for k in TORCHRUN_KEYS} == {
        "RANK": "5", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu017", "MASTER_PORT": "23456"}


def test_missing_launcher_is_a_one_line_error(monkeypatch):
    for key in (*TORCHRUN_KEYS, "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="needs a launcher: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"):
        export_launcher_env()


def test_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")
    out = subprocess.run([sys.executable, "-m", "nexus_pretrain", "hydra/launcher=slurm", "hydra.launcher.nodes=2",
                          "hydra.launcher.partition=gpu", "--cfg", "hydra"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    for line in ("SlurmLauncher", "partition: gpu", "nodes: 2", "gpus_per_node: 8", "tasks_per_node: ${.gpus_per_node}"):
        assert line in out.stdout, line


def test_launch_script_needs_run_id_for_multi_node():
    out = subprocess.run(["bash", str(REPO / "scripts" / "launch.sh"), "--nodes", "2", "--gpus", "1"],
                         capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "RUN_ID"})
    assert out.returncode == 2 and "set RUN_ID" in out.stderr


def test_export_of_a_checkpoint_equals_the_end_of_run_export(tmp_path, capsys):
    cfg = compose_config(["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1",
                          "model.ffn_dim=64", "data.seq_len=16", "data.eval_sequences=2", "trainer.global_batch=4",
                          "trainer.micro_batch=2", "trainer.max_steps=2", "schedule.warmup_steps=1",
                          "schedule.decay_steps=1", "logging.progress_bar=false", "backend.device=cpu",
                          f"trainer.run_dir={tmp_path / 'run'}"])
    Trainer(cfg).fit()
    export([str(tmp_path / "run"), str(tmp_path / "exported")])  # a run directory: its newest checkpoint
    assert "step_00000002" in capsys.readouterr().out
    got, want = (load_file(str(d / "model.safetensors")) for d in (tmp_path / "exported", tmp_path / "run" / "hf"))
    assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in want)
    assert (tmp_path / "exported" / "tokenizer.json").is_file()
    with pytest.raises(SystemExit):
        export([str(tmp_path / "nothing"), str(tmp_path / "out")])
    assert ckpt.latest_checkpoint(tmp_path / "nothing") is None
