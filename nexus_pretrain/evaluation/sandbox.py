"""Run untrusted generated Python (HumanEval/MBPP completions) and score it against its tests.

The verdict never comes from the program under test. ``run_task`` starts two sandboxed processes: the
*program* runs the generated code and then only answers requests; the *judge* runs the benchmark's
trusted setup and tests, in which the program's functions are proxies. Arguments and results cross as
plain data rebuilt on arrival (sandbox_child.py), so the program cannot return an object that compares
equal to anything, cannot read the tests or their expected answers, cannot patch the checker, and
exiting early (``os._exit(0)``, ``sys.exit``) only makes its calls fail. The judge writes the verdict to a
pipe that only the evaluating process holds.

Isolation, enforced by the kernel for every process (program and judge alike):

- fresh user, PID, mount, network, IPC and UTS namespaces (``unshare``): the process is PID 1 of its own
  ``/proc`` and sees no host process; the filesystem is read-only except private tmpfs on /tmp, /var/tmp
  and /dev/shm; every capability is dropped; no network. Concurrent programs share nothing writable and
  cannot see each other;
- when the evaluator runs as root, each process gets a fresh unprivileged uid, so nothing it can reach is
  its own and RLIMIT_NPROC counts it alone;
- resource limits: wall-clock ``timeout`` (the whole process group is killed), RLIMIT_CPU, RLIMIT_AS
  (``memory_mb``), RLIMIT_FSIZE 64 MiB, RLIMIT_CORE 0, RLIMIT_NPROC; an environment with only PATH, HOME,
  TMPDIR and LANG; Python in isolated mode; output to unlinked files bounded by RLIMIT_FSIZE;
- an audit hook refusing process creation, sockets and writes outside the private directory (defence in
  depth: code using ctypes can get around it, the kernel's limits above it cannot).

Where the namespaces are unavailable (or root has no interpreter an unprivileged uid can run), nothing runs
unless ``permit_unisolated()`` was called (nexus-eval's ``--allow-unisolated-code``); ``isolation()`` says
which case holds, and the results JSON records it.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import random
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

CHILD_SOURCE = Path(__file__).with_name("sandbox_child.py").read_text(encoding="utf-8")
UNSHARE_FLAGS = ("--user", "--map-root-user", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--net",
                 "--ipc", "--uts")
FRESH_UIDS = (1 << 30, 1 << 31)
"""Uids handed to sandboxed processes when the evaluator is root (no passwd entry needed, none in use)."""
TMPFS_MB = 64
ALLOW_FLAG = "--allow-unisolated-code"
CODE_BENCHMARKS = frozenset({"humaneval", "mbpp"})
"""Benchmarks whose scoring runs generated code here."""

_unisolated_allowed = False


@dataclass(frozen=True)
class Outcome:
    """How one program or task ended: passed only if it ran to its end (program) or its tests passed (task)."""

    passed: bool
    status: str  # "passed", "failed", "timeout"
    returncode: Optional[int]
    stderr: str


@dataclass(frozen=True)
class Task:
    """Generated code and the trusted code that judges it.

    ``program`` runs in the program process; ``setup`` then ``tests`` run in the judge, where a name they do
    not define is looked up in the program (functions become proxies, standard modules are imported by the
    judge itself, data is copied); ``entry`` names are always taken from the program, even where ``setup``
    defines them (HumanEval's prompt holds a stub of the function under test)."""

    program: str
    setup: str
    tests: str
    entry: Tuple[str, ...] = ()


class SandboxUnavailable(RuntimeError):
    """Generated code would run without isolation and that was not explicitly allowed."""


def permit_unisolated(allowed: bool = True) -> None:
    """Allow (or forbid again) running generated code where isolation is unavailable."""
    global _unisolated_allowed
    _unisolated_allowed = allowed


# -------------------------------------------------------------------------------------------- identity
def _limits(memory_mb: int, cpu_s: int, nproc: int, uid: Optional[int]):
    def apply() -> None:  # runs in the child between fork and exec
        memory = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 2**20, 64 * 2**20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
    return apply


def _fresh_uid() -> Optional[int]:
    """A fresh unprivileged uid for the next process when we are root, else None (processes keep our uid)."""
    return random.SystemRandom().randrange(*FRESH_UIDS) if os.geteuid() == 0 else None


def _runs_as(uid: Optional[int], python: str) -> bool:
    try:
        return subprocess.run([python, "-I", "-c", "pass"], capture_output=True, timeout=30, cwd="/",
                              preexec_fn=_limits(1024, 30, 1 << 16, uid)).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=None)
def _interpreter() -> Optional[str]:
    """A Python the sandboxed processes can execute (only the standard library is needed): ours, unless we are
    root and it lives where an unprivileged uid cannot read it (e.g. under /root); None if there is none."""
    if os.geteuid() != 0:
        return sys.executable
    for python in (sys.executable, shutil.which("python3") or "", "/usr/bin/python3"):
        if python and _runs_as(FRESH_UIDS[0], python):
            return python
    return None


# ------------------------------------------------------------------------------------------- isolation
@functools.lru_cache(maxsize=None)
def _namespaces() -> Tuple[bool, str]:
    """(whether a probe process got every namespace, the read-only filesystem and no capabilities, why not)."""
    exe, python = shutil.which("unshare"), _interpreter()
    if exe is None:
        return False, "no unshare command (util-linux)"
    if python is None:
        return False, "no Python interpreter an unprivileged user can execute"
    try:
        with tempfile.TemporaryFile() as stdin:
            stdin.write(b"{}")
            stdin.seek(0)
            done = subprocess.run([exe, *UNSHARE_FLAGS, python, "-I", "-B", "-c", CHILD_SOURCE, "probe", "ns"],
                                  stdin=stdin, capture_output=True, timeout=30, cwd="/",
                                  preexec_fn=_limits(1024, 30, 1 << 16, _fresh_uid()))
    except (OSError, subprocess.SubprocessError) as error:
        return False, f"unshare could not start ({error})"
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        return False, f"unshare {' '.join(UNSHARE_FLAGS)} failed ({lines[-1] if lines else done.returncode})"
    facts = json.loads(done.stdout)
    problems = []
    if facts["pid"] != 1 or facts["proc"] != [1]:
        problems.append(f"other processes visible in /proc ({len(facts['proc'])})")
    if facts["tmp"]:
        problems.append("/tmp not private")
    if facts["writable_mounts"]:
        problems.append(f"writable mounts {', '.join(facts['writable_mounts'][:3])}")
    if any(int(value, 16) for value in facts["caps"]):
        problems.append("capabilities left")
    return (False, "; ".join(problems)) if problems else (True, "")


def isolation() -> Dict[str, Any]:
    """What this machine enforces on generated code (recorded in results JSONs): ``isolated`` and, if not,
    ``missing``; the namespaces, users, network, interpreter; whether unisolated execution was allowed."""
    works, why = _namespaces()
    python = _interpreter()
    if os.geteuid() == 0:
        users = ("a fresh unprivileged uid per process" if python
                 else "root (no interpreter an unprivileged uid can run)")
    else:
        users = f"the evaluator's uid ({pwd.getpwuid(os.geteuid()).pw_name})"
    return {
        "isolated": works,
        "missing": [] if works else [f"namespaces: {why}"],
        "verdict": "tests run in a separate judge process; the program only answers calls with plain data",
        "namespaces": "user, pid with its own /proc, mount (read-only, private /tmp), network, ipc, uts"
                      if works else "none",
        "users": users,
        "network": "namespace" if works else "audit-hook",
        "python": python or sys.executable,
        "unisolated_allowed": _unisolated_allowed,
    }


def network_isolation() -> str:
    """'namespace' when programs get an empty network namespace, else 'audit-hook' (refused sockets only)."""
    return "namespace" if _namespaces()[0] else "audit-hook"


def require_isolation() -> None:
    """SandboxUnavailable, one line naming what is missing and the way out, unless generated code would run
    isolated or ``permit_unisolated()`` allowed it."""
    works, why = _namespaces()
    if not works and not _unisolated_allowed:
        raise SandboxUnavailable(f"refusing to run generated code without isolation ({why}); run where unprivileged "
                                 "user namespaces are allowed (unshare --user --map-root-user --pid --mount-proc true "
                                 f"must work), or pass {ALLOW_FLAG} to run it anyway")


# ---------------------------------------------------------------------------------------------- launch
@dataclass
class _Child:
    proc: Optional[subprocess.Popen]
    out: Any
    err: Any
    workdir: Optional[Path]
    namespaced: bool
    error: str = ""


def _user_process_count(uid: int) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _launch(role: str, payload: Dict[str, Any], pass_fds: Sequence[int], timeout: float, memory_mb: int,
            max_procs: int) -> _Child:
    """Start one sandboxed process running sandbox_child.py in ``role`` with ``payload`` on stdin."""
    namespaced = _namespaces()[0]
    python = _interpreter()
    uid = _fresh_uid() if python is not None else None  # root without a usable interpreter stays root
    python = python or sys.executable
    workdir = None
    if namespaced:
        command, cwd = [shutil.which("unshare"), *UNSHARE_FLAGS], "/"
    else:
        command, workdir = [], Path(tempfile.mkdtemp(prefix="nexus_sandbox_"))
        if uid is not None:
            os.chown(workdir, uid, uid)
        cwd = str(workdir)
    command += [python, "-I", "-B", "-c", CHILD_SOURCE, role, "ns" if namespaced else "none", *map(str, pass_fds)]
    # unshare and its forked child count against RLIMIT_NPROC too; a fresh uid runs nothing else.
    nproc = (0 if uid is not None else _user_process_count(os.geteuid())) + max_procs + 2
    env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8"}
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    with tempfile.TemporaryFile() as stdin:
        stdin.write(json.dumps({**payload, "tmpfs_mb": TMPFS_MB}).encode())
        stdin.seek(0)
        try:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=stdin, stdout=out, stderr=err,
                                    pass_fds=tuple(pass_fds), start_new_session=True,
                                    preexec_fn=_limits(memory_mb, int(timeout) + 1, nproc, uid))
        except OSError as error:
            return _Child(None, out, err, workdir, namespaced, f"sandbox: could not start: {error}")
    return _Child(proc, out, err, workdir, namespaced)


def _exited(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process to exit; whether it did. A pidfd wakes us at its exit
    (Popen.wait with a timeout polls, adding up to 50 ms per process)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None:
        try:
            proc.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        select.select([pidfd], [], [], max(timeout, 0.0))
    finally:
        os.close(pidfd)
    return proc.poll() is not None


def _wait(child: _Child, timeout: float) -> Optional[str]:
    """None once the process exited, "timeout" if it outlived ``timeout`` seconds."""
    return None if _exited(child.proc, timeout) else "timeout"


def _finish(child: _Child) -> Tuple[str, str]:
    """Kill what is left of a sandboxed process, delete its directory; its stdout and stderr tails."""
    if child.proc is not None:
        _kill_tree(child.proc, child.namespaced)
    stdout, stderr = _tail(child.out), child.error or _tail(child.err)
    child.out.close()
    child.err.close()
    if child.workdir is not None:
        shutil.rmtree(child.workdir, ignore_errors=True)
    return stdout, stderr


def _tail(f, n: int = 4000) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - n))
    return f.read().decode(errors="replace")


def _kill_tree(proc: subprocess.Popen, namespaced: bool) -> None:
    """Kill everything the process started and reap it.

    Under ``unshare --pid --fork`` the code runs as PID 1 of its namespace and the ``unshare`` leader
    waits for it: killing the members other than the leader first lets the kernel kill and reap the
    whole namespace and ``unshare`` reap its child; killing all at once would orphan a zombie.
    """
    members = [pid for pid in _process_group(proc.pid) if pid != proc.pid] if namespaced else []
    for pid in members:
        _kill(pid)
    if members:
        _exited(proc, 5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _process_group(pgid: int) -> List[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # fields after the parenthesised command: state, ppid, pgrp, ...
            if int(stat[stat.rindex(")") + 2:].split()[2]) == pgid:
                pids.append(int(entry.name))
    return pids


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------------------------------------- run
def run_program(code: str, timeout: float = 10.0, memory_mb: int = 1024, max_procs: int = 8) -> Outcome:
    """Run ``code`` as a Python program in one sandboxed process; passed if it exits 0 after its last line.

    That verdict is the program's own word (it could fake it): score benchmarks with ``run_task``.
    """
    require_isolation()
    marker = uuid.uuid4().hex
    child = _launch("plain", {"code": code, "marker": marker}, (), timeout, memory_mb, max_procs)
    status = _wait(child, timeout) if child.proc is not None else None
    stdout, stderr = _finish(child)
    if child.proc is None:
        return Outcome(False, "failed", None, stderr)
    if status == "timeout":
        return Outcome(False, "timeout", None, f"sandbox: timed out after {timeout:g}s\n{stderr}")
    returncode = child.proc.returncode
    passed = returncode == 0 and marker in stdout
    if returncode == 0 and not passed:
        stderr += "\nsandbox: exited before the end of the program"
    return Outcome(passed, "passed" if passed else "failed", returncode, stderr)


def run_task(task: Task, timeout: float = 10.0, memory_mb: int = 1024, max_procs: int = 8) -> Outcome:
    """Score generated code against its tests (module docstring): passed only if the judge ran every test."""
    require_isolation()
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    program = judge = None
    try:
        program = _launch("program", {"code": task.program}, (requests_r, replies_w), timeout, memory_mb, max_procs)
        judge = _launch("judge", {"setup": task.setup, "tests": task.tests, "entry": list(task.entry)},
                        (requests_w, replies_r, verdict_w), timeout, memory_mb, max_procs)
    finally:
        for fd in (requests_r, replies_w, requests_w, replies_r, verdict_w):
            os.close(fd)  # the parent keeps only the verdict's read end, so EOF means a side is gone
    try:
        status = _wait(judge, timeout) if judge.proc is not None and program.proc is not None else "failed"
        verdict = _read_verdict(verdict_r) if status is None else None
    finally:
        os.close(verdict_r)
        _, program_err = _finish(program)
        _, judge_err = _finish(judge)
    stderr = "\n".join(s for s in (judge_err.strip(), program_err.strip()) if s)
    if status == "timeout":
        return Outcome(False, "timeout", None, f"sandbox: timed out after {timeout:g}s\n{stderr}")
    returncode = judge.proc.returncode if judge.proc is not None else None
    if verdict is None:
        return Outcome(False, "failed", returncode, f"sandbox: the judge gave no verdict\n{stderr}")
    passed = returncode == 0 and verdict.get("passed") is True
    error = "" if passed else str(verdict.get("error", ""))
    return Outcome(passed, "passed" if passed else "failed", returncode, "\n".join(s for s in (error, stderr) if s))


def _read_verdict(fd: int) -> Optional[Dict[str, Any]]:
    """The judge's length-prefixed JSON verdict (the judge has exited, so the pipe holds all of it)."""
    data = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        data += chunk
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != len(data) - 4:
        return None
    try:
        verdict = json.loads(data[4:])
    except ValueError:
        return None
    return verdict if isinstance(verdict, dict) else None


def run_programs(codes: Sequence[str], workers: int = 1, **limits) -> List[Outcome]:
    """run_program over many programs, ``workers`` at a time (each in its own sandbox)."""
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        return list(pool.map(lambda c: run_program(c, **limits), codes))


def run_tasks(tasks: Sequence[Task], workers: int = 1, **limits) -> List[Outcome]:
    """run_task over many tasks, ``workers`` at a time (each in its own sandboxes)."""
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        return list(pool.map(lambda t: run_task(t, **limits), tasks))


def humaneval_task(problem: dict, completion: str) -> Task:
    """HumanEval's check: prompt + completion run as the program; the judge runs the prompt (its helpers are
    the trusted ones), the test and ``check(entry_point)`` with the program's entry point."""
    entry = problem["entry_point"]
    return Task(program=f"{problem['prompt']}{completion}\n", setup=problem["prompt"],
                tests=f"{problem['test']}\n\ncheck({entry})\n", entry=(entry,))


def mbpp_task(doc: dict, code: str) -> Task:
    """MBPP's check: setup code + candidate code run as the program; the judge runs the setup code and every
    assert of the task, calling the program's functions."""
    setup = doc.get("test_setup_code") or ""
    return Task(program=f"{setup}\n{code}\n", setup=setup, tests="\n".join(doc["test_list"]) + "\n")
