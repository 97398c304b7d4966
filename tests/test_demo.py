"""The demo end to end at a tiny size: one data line, progress lines in a log, one summary, the loss-curve
figure and the next commands."""

import os
import re

import pytest
import torch

from nexus_pretrain import demo

pytest.importorskip("matplotlib")  # make demo installs the plots extra
TINY = ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
        "data.seq_len=32", "data.eval_sequences=2", "trainer.global_batch=4", "trainer.micro_batch=4",
        "trainer.max_steps=4", "trainer.eval_every=2", "trainer.log_every=2", "schedule.warmup_steps=1",
        "schedule.decay_steps=1", "trainer.export_hf=false"]


@pytest.mark.slow  # two nexus-train processes: ~15 s on 2 busy cores
def test_the_demo_trains_both_runs_side_by_side_and_draws_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(demo, "PROGRESS_EVERY_S", 0.0)
    recipes = [r for r in demo.demo_recipes() if r.stem in ("embedded_web", "embedded_legal")]
    monkeypatch.setattr(demo, "demo_recipes", lambda: recipes)  # the smallest training domain: faster
    threads_before = torch.get_num_threads()
    try:
        finals = demo.main([*TINY, "data.domains={web: 1.0}"])
    finally:
        torch.set_num_threads(threads_before)  # the demo shares the cores out in this process too
    out, err = capsys.readouterr()  # the summary on stdout; status and progress as log messages on stderr
    assert err.count("Data: runs/demo/data") == 1  # was printed twice
    threads = int(re.search(r"(\d+) thread\(s\) each", err).group(1))  # the free cores shared by the two runs
    assert 1 <= threads <= max(1, len(os.sched_getaffinity(0)) // 2)
    assert "steps: adamw 4/4, nexus 4/4" in err  # periodic lines, not a bar, when stderr is no terminal
    assert "| run | optimizer | step | seeds | pretrain | OOD | val web | train loss |" in out
    assert "| optim=adamw | adamw | 4 | 1 |" in out and "| optim=nexus | nexus(adamw) | 4 | 1 |" in out
    assert (tmp_path / "runs/demo/loss_curves.png").stat().st_size > 10_000 and "Loss curves: runs/demo/loss_curves.png" in out
    assert out.rstrip().splitlines()[-4] == "Next, try:" and "nexus-data prepare mine=" in out.splitlines()[-1]
    assert set(finals) == {"adamw", "nexus"} and finals["nexus"]["step"] == 4
    assert (tmp_path / "runs/demo/nexus.log").is_file()
