"""Documented commands cannot rot: every fenced bash block of the README and docs/*.md runs, in order, in a
scratch directory per page, with nexus-train made tiny; blocks that need a GPU, the hub or another machine
are preceded by `<!-- skip-ci: REASON -->`. Every relative link points at a file (and heading) that exists."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

import pytest

from nexus_pretrain.paths import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
RUNNABLE = ("bash", "sh", "shell")
SKIP = re.compile(r"^<!--\s*skip-ci:\s*(\S.*?)\s*-->$")
FENCE = re.compile(r"^```\s*(\S*)\s*$")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# Appended to every nexus-train command: a 1-layer model, 2 steps, 2 evaluation windows per domain.
TINY = ["model.dim=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1", "model.ffn_dim=64",
        "data.seq_len=32", "data.eval_sequences=2", "trainer.global_batch=4", "trainer.micro_batch=4",
        "trainer.max_steps=2", "trainer.eval_every=2", "trainer.log_every=1", "logging.progress_bar=false"]
LINKED_DIRS = ("scripts", "data_pipelines", "eval", "configs")  # paths the commands name, as in a clone


class Block(NamedTuple):
    page: Path
    line: int
    language: str
    text: str
    skip: Optional[str]


def fenced_blocks(page: Path) -> List[Block]:
    """The fenced code blocks of a Markdown page, each with the reason of a skip-ci marker right above it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        above = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.match(above)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        blocks.append(Block(page, i + 1, fence.group(1), "\n".join(lines[i + 1:end]), skip and skip.group(1)))
        i = end + 1
    return blocks


def runnable(page: Path) -> List[Block]:
    """The blocks of a page CI runs."""
    return [b for b in fenced_blocks(page) if b.language in RUNNABLE and not b.skip]


def test_every_block_says_what_it_is():
    """Shell blocks run or say why not; other blocks name their language (text, yaml)."""
    for page in PAGES:
        for block in fenced_blocks(page):
            where = f"{page.relative_to(REPO_ROOT)}:{block.line}"
            assert block.language, f"{where}: a fence without a language; write ```bash, ```text or ```yaml"
            assert block.skip is None or block.language in RUNNABLE, f"{where}: skip-ci above a non-shell block"


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_relative_links_point_at_existing_files_and_headings():
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.relative_to(REPO_ROOT)}: link to {target}: no such file"
            if anchor and resolved.suffix == ".md":
                headings = [_slug(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.MULTILINE)]
                assert anchor in headings, f"{page.relative_to(REPO_ROOT)}: link to {target}: no such heading"


@pytest.mark.slow  # the commands of one page: seconds each at the tiny size
@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: p.name)
def test_documented_commands_run(page, tmp_path):
    for name in LINKED_DIRS:
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    bin_dir = Path(sys.executable).parent
    script = ["set -euo pipefail", f"nexus-train() {{ command nexus-train \"$@\" {shlex.join(TINY)}; }}"]
    for block in runnable(page):
        script += [f"echo '>>> {page.name}:{block.line}'", block.text]
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    output = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, f"a command of {page.relative_to(REPO_ROOT)} failed:\n{output}"
