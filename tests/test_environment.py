"""What a run or benchmark records about the code and machine that produced its numbers."""

import re
import subprocess

import torch

from nexus_pretrain.rundir import environment as env


def test_environment_names_the_commit_versions_and_device():
    record = env.environment(torch.device("cpu"), world_size=2)
    assert record["versions"]["torch"] == torch.__version__ and "nexus_pretrain" in record["versions"]
    assert (record["device"], record["cuda"], record["world_size"]) == ("cpu", None, 2)
    commit = record["commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)


def test_commit_is_none_outside_a_git_checkout(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert env.code_commit() is None
