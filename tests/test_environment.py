"""What a run or benchmark records about the code and machine that produced its numbers."""

import re
import subprocess

import pytest
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
    assert env.code_commit() is None  # the checkout's ARCHIVED_COMMIT still holds git's placeholder


def test_a_git_archive_names_its_commit(tmp_path):
    """git archive fills ARCHIVED_COMMIT in (.gitattributes: export-subst): the GPU scripts' source trees."""
    root = env.ARCHIVED_COMMIT.parents[1]
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout: nothing to archive")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(root), "archive", "HEAD", "nexus_pretrain/ARCHIVED_COMMIT"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    assert env.archived_commit(tmp_path / "nexus_pretrain" / "ARCHIVED_COMMIT") == head
    assert env.archived_commit(env.ARCHIVED_COMMIT) is None  # the checkout's own copy: the placeholder
