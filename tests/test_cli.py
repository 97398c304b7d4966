"""Console scripts: every one has a working --help, and the non-training ones do real work."""

import os
import subprocess
import sys

import pytest

from nexus_pretrain import cli
from nexus_pretrain.demo import compose_config
from nexus_pretrain.train.trainer import Trainer

SCRIPTS = {"nexus-data": "data", "nexus-eval": "evaluate", "nexus-report": "report", "nexus-bench": "bench"}


@pytest.mark.parametrize("script, func", SCRIPTS.items())
def test_help(script, func, capsys):
    with pytest.raises(SystemExit) as exit_info:
        getattr(cli, func)(["--help"])
    assert exit_info.value.code == 0
    assert f"usage: {script}" in capsys.readouterr().out


def test_train_help_lists_config_groups():
    code = "import sys; from nexus_pretrain.cli import train; train(['--help'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    for group in ("model:", "optim:", "schedule:", "data:", "backend:", "trainer:", "logging:"):
        assert group in out
    assert "llama_1b" in out and "nexus" in out


def test_data_stats(capsys):
    cli.data(["stats"])
    out = capsys.readouterr().out
    for domain in ("web", "math", "code", "legal"):
        assert domain in out


def test_eval_and_report_on_a_trained_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = compose_config(["model.dim=64", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=2",
                          "model.ffn_dim=128", "data.seq_len=32", "trainer.global_batch=4", "trainer.micro_batch=4",
                          "trainer.max_steps=3", "schedule.warmup_steps=1", "schedule.decay_steps=1",
                          "logging.progress_bar=false", f"trainer.run_dir={run_dir}"])
    final = Trainer(cfg).fit()
    capsys.readouterr()
    cli.evaluate([str(run_dir / "hf"), "--seq-len", "32", "--sequences", "32"])
    lines = dict(line.split() for line in capsys.readouterr().out.strip().splitlines())
    # The exported model scores what the trainer measured on the same windows.
    assert float(lines["val/math"]) == pytest.approx(final["val/math"], abs=1e-3)
    assert float(lines["ood/legal"]) == pytest.approx(final["ood/legal"], abs=1e-3)
    cli.report([str(run_dir), str(run_dir), "--baseline", str(run_dir)])
    table = capsys.readouterr().out
    assert "| run | optimizer | step |" in table and "| run, run | adamw | 3 | 2 |" in table  # labelled by directory


def test_multirun_gives_each_job_its_own_run_dir(tmp_path):
    code = "from nexus_pretrain.cli import train; train()"
    args = ["-m", "optim=adamw,nexus", f"hydra.sweep.dir={tmp_path}", "trainer.max_steps=2", "schedule.warmup_steps=1",
            "schedule.decay_steps=1", "model.n_layers=1", "data.seq_len=32", "trainer.global_batch=4",
            "trainer.eval_every=0", "trainer.export_hf=false", "logging.progress_bar=false"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for job, optim in (("0", "adamw"), ("1", "nexus")):
        assert (tmp_path / job / "metrics.jsonl").is_file()
        assert f"name: {optim}" in (tmp_path / job / "config.yaml").read_text()


def test_cuda_allocator_defaults_to_expandable_segments_unless_set(monkeypatch):
    from nexus_pretrain.cli import default_cuda_allocator

    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    default_cuda_allocator()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "max_split_size_mb:512")
    default_cuda_allocator()
    assert os.environ["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:512"
