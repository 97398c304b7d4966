"""Run several training or evaluation commands side by side on one machine, as experiment runners do.

Small models leave a GPU mostly idle, so an experiment of many small runs trains them as concurrent
processes. Each command's output goes to its own log; commands still running at the deadline get SIGTERM
(the trainer checkpoints at its next log step and exits), then SIGKILL a minute later.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

log = logging.getLogger(__name__)

TERMINATE_GRACE_S = 60


def cli_command(entry: str, *args: str) -> List[str]:
    """A console script of nexus_pretrain.cli (e.g. ``data``, ``evaluate``, ``analyze``) run by this interpreter,
    so it works without the console scripts on PATH."""
    return [sys.executable, "-c", f"from nexus_pretrain.cli import {entry}; {entry}()", *args]


def train_command(overrides: Sequence[str]) -> List[str]:
    """nexus-train with Hydra ``overrides``, run by this interpreter."""
    return [sys.executable, "-m", "nexus_pretrain", *overrides]


def run_concurrently(commands: Mapping[str, Sequence[str]], logs: Path, timeout: float, cwd: Optional[Path] = None,
                     max_parallel: Optional[int] = None) -> Dict[str, int]:
    """Run every command (at most ``max_parallel`` at once; default all), output to ``logs/NAME.log``; stop
    what still runs after ``timeout`` seconds. Returns each command's exit code (-9: killed), and logs the
    tail of each failed command's log."""
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(commands.items())
    running: Dict[str, subprocess.Popen] = {}
    codes: Dict[str, int] = {}
    deadline = time.time() + timeout
    limit = max_parallel or len(pending) or 1
    while pending or running:
        while pending and len(running) < limit and time.time() < deadline:
            name, cmd = pending.pop(0)
            with open(logs / f"{name}.log", "w") as out:
                out.write(" ".join(cmd) + "\n")
                out.flush()
                running[name] = subprocess.Popen(list(cmd), cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        if time.time() >= deadline:
            for name, _ in pending:
                codes[name] = -1  # never started
            pending = []
            _stop(running, codes)
            break
        for name, proc in list(running.items()):
            if proc.poll() is not None:
                codes[name] = proc.returncode
                del running[name]
        time.sleep(0.5)
    for name, code in codes.items():
        if code != 0:
            tail = (logs / f"{name}.log").read_text().splitlines()[-15:] if (logs / f"{name}.log").is_file() else []
            log.warning("%s exited %s:\n    %s", name, code, "\n    ".join(tail))
    return codes


def _stop(running: Dict[str, subprocess.Popen], codes: Dict[str, int]) -> None:
    for proc in running.values():
        proc.terminate()
    for name, proc in running.items():
        try:
            codes[name] = proc.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = -9
