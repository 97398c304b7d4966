"""Launchers share the CPU cores out over local processes unless the user set OMP_NUM_THREADS."""

import os

import pytest
import torch

from nexus_pretrain import cli, threads


@pytest.fixture
def four_cores(monkeypatch):
    """An idle machine of 4 cores with no thread setting; torch's own pool is restored afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle machine
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    yield
    torch.set_num_threads(before)


def test_threads_are_the_cores_shared_out():
    assert threads.threads_per_process(1, cores=2) == 2
    assert threads.threads_per_process(2, cores=2) == 1
    assert threads.threads_per_process(3, cores=2) == 1  # never 0
    assert threads.threads_per_process(3, cores=16) == 5
    assert threads.local_processes({"LOCAL_WORLD_SIZE": "8"}) == 8 and threads.local_processes({}) == 1


def test_local_processes_and_concurrent_runs_divide_the_cores(four_cores, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.set_default_threads() == 2
    assert os.environ["OMP_NUM_THREADS"] == "2" and torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert threads.set_default_threads(concurrent=4) == 1 and torch.get_num_threads() == 1


def test_the_users_setting_wins(four_cores, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.set_default_threads() is None and os.environ["OMP_NUM_THREADS"] == "3"


def test_nexus_train_sets_threads_before_torch_runs(four_cores, monkeypatch, capsys):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr("sys.argv", ["nexus-train"])
    cli.train(["--cfg", "job"])  # composes and prints the config, trains nothing
    assert "model:" in capsys.readouterr().out
    assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1


def test_cores_that_other_work_keeps_busy_are_not_counted(four_cores, monkeypatch):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.2, 0.0, 0.0))  # one core busy elsewhere
    assert threads.free_cores() == 3 and threads.set_default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (9.0, 0.0, 0.0))  # a saturated machine: still 1
    assert threads.set_default_threads(concurrent=2) == 1
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 16)  # 4 of 16 host CPUs: a quarter of the load is ours
    assert threads.busy_cores(4) == 2.25 and threads.free_cores() == 2
