"""Run untrusted generated Python (HumanEval/MBPP completions plus their tests) in a locked-down child.

What is enforced for every program, never in the evaluating process:

- a child process in its own session, killed with its whole process group at ``timeout`` seconds
  (wall clock) and by RLIMIT_CPU;
- RLIMIT_AS (``memory_mb``), RLIMIT_FSIZE (64 MiB), RLIMIT_CORE 0, RLIMIT_NPROC (``max_procs`` more
  processes than the sandbox user already runs);
- when the evaluator runs as root, the child drops to the ``nobody`` user (with the first Python
  that user can execute), so RLIMIT_NPROC applies (root ignores it) and file permissions keep it out
  of everything but its own temp dir; if no interpreter is usable as ``nobody`` it stays root and
  only the audit hook limits processes (``isolation()`` reports which);
- a fresh temp dir as cwd, HOME and TMPDIR, deleted afterwards; an environment with only PATH, HOME,
  TMPDIR, LANG; Python in isolated mode (``-I``: no PYTHON* variables, no user site); stdout and
  stderr go to files, so RLIMIT_FSIZE also bounds an output flood;
- no network: a new empty network namespace (``unshare --net --map-root-user``) when the kernel
  allows it, and always a Python audit hook that refuses sockets; with it a PID namespace
  (``--pid --fork``) whose teardown kills and reaps whatever the program left running;
- the same audit hook refuses process creation (fork, exec, spawn, subprocess, os.system, kill) and
  file writes, deletes, renames and directory changes outside the temp dir;
- a program passes only if it exits 0 after its last line (a random marker printed there must show
  up), so ``sys.exit(0)`` or ``os._exit(0)`` before the tests fails.

The audit hook is defence in depth, not a security boundary: code using ctypes could get around it.
The namespace, the user switch and the resource limits are what the kernel enforces.
"""

from __future__ import annotations

import functools
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

# Runs inside the child before the program; ``sys.addaudithook`` hooks cannot be removed afterwards.
_GUARD = r'''
import os, sys
_root = os.path.realpath(os.getcwd())
def _inside(path):
    try:
        p = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else _root)
    except Exception:
        return False
    return p == _root or p.startswith(_root + os.sep)
_NO = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
       "os.kill", "os.killpg", "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
       "pty.spawn"}
_PATH_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.link",
                "os.symlink", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "os.chdir"}
def _hook(event, args):
    if event in _NO:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        writing = ((mode is not None and any(c in str(mode) for c in "wax+"))
                   or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)))
        if writing and path is not None and not _inside(path):
            raise PermissionError(f"sandbox: writing {path} is not allowed")
    elif event in _PATH_EVENTS:
        if args and not _inside(args[0]):
            raise PermissionError(f"sandbox: {event} outside the sandbox is not allowed")
    elif event == "os.rename":
        if not (_inside(args[0]) and _inside(args[1])):
            raise PermissionError("sandbox: os.rename outside the sandbox is not allowed")
sys.addaudithook(_hook)
del _hook
__name__ = "__main__"
with open("program.py") as _f:
    _code = compile(_f.read(), "program.py", "exec")
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
'''


@dataclass(frozen=True)
class Outcome:
    """How one program ended: passed only if it ran to its end and exited 0 within the time limit."""

    passed: bool
    status: str  # "passed", "failed", "timeout"
    returncode: Optional[int]
    stderr: str


def _runs_as(user: Optional[pwd.struct_passwd], python: str) -> bool:
    try:
        return subprocess.run([python, "-I", "-c", "pass"], capture_output=True, timeout=30, cwd="/",
                              preexec_fn=_limits(1024, 30, 1 << 16, user)).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.lru_cache(maxsize=None)
def _sandbox_identity() -> Tuple[Optional[pwd.struct_passwd], str]:
    """(user to switch to or None, Python interpreter) for the child.

    As root, programs run as ``nobody`` with the first interpreter that user can execute (ours may
    live under /root); programs only need the standard library. Failing that they stay root, and
    only the audit hook stops process creation (RLIMIT_NPROC does not bind root).
    """
    if os.geteuid() != 0:
        return None, sys.executable
    nobody = pwd.getpwnam("nobody")
    for python in (sys.executable, shutil.which("python3") or "", "/usr/bin/python3"):
        if python and _runs_as(nobody, python):
            return nobody, python
    return None, sys.executable


def _sandbox_user() -> Optional[pwd.struct_passwd]:
    return _sandbox_identity()[0]


def isolation() -> Dict[str, str]:
    """What this machine enforces: network, process limit, user and interpreter (for results JSONs)."""
    user, python = _sandbox_identity()
    return {"network": network_isolation(),
            "processes": "RLIMIT_NPROC + audit hook" if (user or os.geteuid() != 0) else "audit hook only (root)",
            "user": user.pw_name if user else pwd.getpwuid(os.geteuid()).pw_name, "python": python}


@functools.lru_cache(maxsize=None)
def _net_prefix() -> tuple:
    """``unshare`` arguments giving the child empty network and PID namespaces, or () where the kernel refuses.

    Probed as the sandbox user, since the user switch happens before ``unshare`` runs.
    """
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    # --pid --fork: the program is PID 1 of its own namespace; when it dies the kernel kills and reaps
    # everything it left behind (no zombies pile up under a container's non-reaping init).
    prefix = (exe, "--net", "--pid", "--fork", "--kill-child", "--map-root-user")
    user = _sandbox_user()
    try:
        ok = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, cwd="/",
                            preexec_fn=_limits(1024, 10, 1 << 16, user)).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return prefix if ok else ()


def network_isolation() -> str:
    """'namespace' when programs get empty network and PID namespaces, else 'audit-hook'."""
    return "namespace" if _net_prefix() else "audit-hook"


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


def _limits(memory_mb: int, cpu_s: int, nproc: int, drop_to: Optional[pwd.struct_passwd]):
    def apply() -> None:  # runs in the child between fork and exec
        memory = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 2**20, 64 * 2**20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if drop_to is not None:
            os.setgroups([])
            os.setgid(drop_to.pw_gid)
            os.setuid(drop_to.pw_uid)
    return apply


def run_program(code: str, timeout: float = 10.0, memory_mb: int = 1024, max_procs: int = 8) -> Outcome:
    """Run ``code`` as a Python program in the sandbox described in this module's docstring.

    It passes only if it exits with status 0 after reaching its last line (a random marker printed
    there must appear in its output), so an early ``os._exit(0)`` or ``sys.exit(0)`` fails.
    """
    drop_to = _sandbox_user()
    uid = drop_to.pw_uid if drop_to else os.geteuid()
    workdir = Path(tempfile.mkdtemp(prefix="nexus_sandbox_"))
    marker = uuid.uuid4().hex
    try:
        (workdir / "program.py").write_text(f"{code}\n\nprint({marker!r}, flush=True)\n")
        if drop_to is not None:
            os.chown(workdir, drop_to.pw_uid, drop_to.pw_gid)
            os.chmod(workdir, 0o700)
            os.chown(workdir / "program.py", drop_to.pw_uid, drop_to.pw_gid)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        command = [*_net_prefix(), _sandbox_identity()[1], "-I", "-B", "-c", _GUARD]
        nproc = _user_process_count(uid) + max_procs
        # Output goes to unlinked temp files (not pipes), so RLIMIT_FSIZE bounds what a chatty program can write.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True,
                                        preexec_fn=_limits(memory_mb, int(timeout) + 1, nproc, drop_to))
            except OSError as e:
                return Outcome(False, "failed", None, f"sandbox: could not start: {e}")
            try:
                proc.wait(timeout=timeout)
                status = None
            except subprocess.TimeoutExpired:
                status = "timeout"
            finally:
                _kill_tree(proc, namespaced=bool(_net_prefix()))
            stdout, stderr = _tail(out), _tail(err)
        if status == "timeout":
            return Outcome(False, "timeout", None, f"sandbox: timed out after {timeout:g}s\n{stderr}")
        passed = proc.returncode == 0 and marker in stdout
        if proc.returncode == 0 and not passed:
            stderr += "\nsandbox: exited before the end of the program"
        return Outcome(passed, "passed" if passed else "failed", proc.returncode, stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _tail(f, n: int = 4000) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - n))
    return f.read().decode(errors="replace")


def _kill_tree(proc: subprocess.Popen, namespaced: bool) -> None:
    """Kill everything the program started and reap the child.

    Under ``unshare --pid --fork`` the program is PID 1 of its namespace and the ``unshare`` leader
    waits for it: killing the members other than the leader first lets the kernel kill and reap the
    whole namespace and ``unshare`` reap the program; killing all at once would orphan its zombie.
    """
    members = [pid for pid in _process_group(proc.pid) if pid != proc.pid] if namespaced else []
    for pid in members:
        _kill(pid)
    if members:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
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


def run_programs(codes: Sequence[str], workers: int = 1, **limits) -> List[Outcome]:
    """run_program over many programs, ``workers`` at a time (each still in its own sandbox)."""
    if workers <= 1:
        return [run_program(c, **limits) for c in codes]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda c: run_program(c, **limits), codes))


def humaneval_program(problem: dict, completion: str) -> str:
    """The program HumanEval's harness runs: prompt + completion + test + check(entry_point)."""
    return f"{problem['prompt']}{completion}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def mbpp_program(doc: dict, code: str) -> str:
    """The program MBPP's harness runs: setup code, the candidate code, then every assert of the task."""
    tests = "\n".join(doc["test_list"])
    return f"{doc.get('test_setup_code') or ''}\n{code}\n\n{tests}\n"
