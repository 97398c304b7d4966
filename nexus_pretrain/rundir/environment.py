"""What produced a run's or a benchmark's numbers: the code's commit and the software and hardware it ran
on. A run appends one line to ``environment.jsonl`` each time it starts or resumes, so a resume on other
code, another torch or another GPU is on record next to the metrics it changed."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Optional

import torch

ENVIRONMENT_FILE = "environment.jsonl"
PACKAGES = ("nexus_pretrain", "torch", "torchao", "transformers", "deepspeed", "flash-attn", "lm-eval")
"""Distributions whose versions are recorded (those installed)."""

ARCHIVED_COMMIT = Path(__file__).resolve().parents[1] / "ARCHIVED_COMMIT"
"""Holds ``$Format:%H$``, which ``git archive`` replaces with the archived commit (.gitattributes: export-subst)."""


def archived_commit(path: Path = ARCHIVED_COMMIT) -> Optional[str]:
    """The commit a ``git archive`` source tree was made from, None when ``path`` was not written by one."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text if re.fullmatch(r"[0-9a-f]{40}", text) else None


def code_commit() -> Optional[str]:
    """In a source tree made by ``git archive``, the archived commit (first: such a tree may lie inside
    another checkout); else the git commit of this package's checkout, with "-dirty" when tracked files
    differ from it; None otherwise (e.g. an installed wheel)."""
    archived = archived_commit()
    if archived is not None:
        return archived
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if head is None:
        return None
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _version(distribution: str) -> Optional[str]:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device, world_size: int = 1) -> Dict[str, Any]:
    """The commit, Python and package versions, CUDA, and the device (GPU name) and number of ranks."""
    versions = {name: v for name in PACKAGES if (v := _version(name)) is not None}
    versions["torch"] = torch.__version__  # the running one, also for builds without package metadata
    cuda = device.type == "cuda"
    return {"commit": code_commit(), "python": platform.python_version(), "versions": versions,
            "cuda": torch.version.cuda if cuda else None,
            "device": torch.cuda.get_device_name(device) if cuda else "cpu", "world_size": world_size}


def record_environment(run_dir: Path, step: int, device: torch.device, world_size: int = 1) -> None:
    """Append the environment of a run starting (or resuming) at ``step`` to RUN_DIR/environment.jsonl."""
    line = {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **environment(device, world_size)}
    with open(Path(run_dir) / ENVIRONMENT_FILE, "a") as file:
        file.write(json.dumps(line) + "\n")
