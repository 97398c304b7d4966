"""Golden loss curves (scripts/golden_losses.py): AdamW, Nexus and Muon on one process, FSDP2 and DeepSpeed
ZeRO-2 over two gloo ranks log exactly the numbers in tests/golden/losses.json. A change that moves them is
either a bug or deliberate; a deliberate one regenerates the file in a commit that says why."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_logged_losses_match_the_golden_curves():
    pytest.importorskip("deepspeed", reason="the golden curves include DeepSpeed ZeRO-2 (pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "golden_losses.py"), "--check"],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
