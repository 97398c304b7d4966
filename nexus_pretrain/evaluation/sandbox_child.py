"""The code that runs inside every sandboxed process (see sandbox.py), before and around the code under test.

Standard library only: the parent passes this file's text to ``python -I -B -c`` (an interpreter that need not
see this package) with the arguments ``ROLE CONFINE [FD ...]`` and a JSON document on stdin.

CONFINE "ns" (inside fresh user, PID, mount, network, IPC and UTS namespaces): the whole filesystem is made
read-only, fresh size-limited tmpfs are mounted on /tmp, /var/tmp and /dev/shm, and every capability is
dropped (bounding set included, no_new_privs), so nothing the code does can undo the mounts. "none": the
process stays in the temporary directory the parent made. Either way an audit hook then refuses process
creation, sockets and writes outside the private directory (defence in depth; ctypes can get around it).

Roles:
- probe: report what the confinement achieved (the parent decides whether that counts as isolated);
- plain: run a program; print a marker after its last line;
- program: run the code under test, then answer a judge's requests over two pipes (lookups and calls);
- judge: run trusted setup and test code against the program's names, which resolve to proxies; write the
  verdict to a pipe only the parent reads. Values cross between the two as plain data (None, bool, int,
  float, complex, str, bytes and lists, tuples, dicts, sets of them), rebuilt from scratch on arrival, so an
  object of the program can never decide a comparison; anything else stays in the program as a reference.
"""

import builtins
import importlib
import json
import os
import struct
import sys
import traceback
import types
from itertools import islice

MAX_MESSAGE = 16 << 20
MAX_DEPTH = 64
MAX_ITEMS = 1 << 20
TMPFS = ("/tmp", "/var/tmp", "/dev/shm")


# ----------------------------------------------------------------------------------------- confinement
def _libc():
    import ctypes  # only where confinement is applied

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _check(ctypes, result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def confine_namespaces(tmpfs_mb):
    """Read-only filesystem, private tmpfs, no capabilities (we are root of a fresh user namespace)."""
    ctypes, libc = _libc()

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    # mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, {MOUNT_ATTR_RDONLY}): every mount read-only (Linux >= 5.12;
    # 442 on every architecture). Mounts inherited from the parent namespace stay locked read-only.
    attr = MountAttr(1, 0, 0, 0)
    _check(ctypes, libc.syscall(442, -100, b"/", 0x8000, ctypes.byref(attr), ctypes.sizeof(attr)),
           "read-only remount of /")
    options = f"size={tmpfs_mb}m,mode=1777".encode()
    for target in TMPFS:
        if os.path.isdir(target):  # MS_NOSUID | MS_NODEV | MS_NOEXEC
            _check(ctypes, libc.mount(b"tmpfs", target.encode(), b"tmpfs", 2 | 4 | 8, options), f"tmpfs on {target}")
    os.chdir("/tmp")
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _check(ctypes, libc.prctl(24, cap, 0, 0, 0), "PR_CAPBSET_DROP")  # no capability after any exec
    _check(ctypes, libc.prctl(47, 4, 0, 0, 0), "PR_CAP_AMBIENT_CLEAR_ALL")
    _check(ctypes, libc.prctl(38, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    _check(ctypes, libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")


_GUARD_NO = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen",
             "os.kill", "os.killpg", "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo",
             "pty.spawn"}
_PATH_EVENTS = {"os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate", "os.link",
                "os.symlink", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile", "os.chdir"}


def install_guard(roots):
    """Audit hook: no process creation or sockets, no writes outside the ``roots`` folders (cannot be removed)."""
    roots = [os.path.realpath(root) for root in roots]

    def inside(path):
        try:
            p = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else roots[0])
        except Exception:
            return False
        return any(p == root or p.startswith(root + os.sep) for root in roots)

    def hook(event, args):
        if event in _GUARD_NO:
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = ((mode is not None and any(c in str(mode) for c in "wax+"))
                       or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)))
            if writing and path is not None and not inside(path):
                raise PermissionError(f"sandbox: writing {path} is not allowed")
        elif event in _PATH_EVENTS:
            if args and not inside(args[0]):
                raise PermissionError(f"sandbox: {event} outside the sandbox is not allowed")
        elif event == "os.rename":
            if not (inside(args[0]) and inside(args[1])):
                raise PermissionError("sandbox: os.rename outside the sandbox is not allowed")

    sys.addaudithook(hook)


# ------------------------------------------------------------------------------------------- messages
class ProgramGone(BaseException):
    """The program under test stopped answering or broke the protocol (not an Exception: tests that catch
    Exception must not swallow it)."""


def send(fd, message):
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"sandbox: a value of {len(data)} bytes is too large to pass")
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise ProgramGone("sandbox: the program under test exited or closed its channel")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def receive(fd):
    (size,) = struct.unpack(">I", _read_exact(fd, 4))
    if size > MAX_MESSAGE:
        raise ProgramGone(f"sandbox: message of {size} bytes")
    try:
        return json.loads(_read_exact(fd, size))
    except (ValueError, RecursionError):
        raise ProgramGone("sandbox: malformed message from the program under test") from None


def encode(value, reference, depth=0):
    """Plain data as tagged JSON; anything else as ["r", reference(value)]."""
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        return ["b", bool(value)]
    if isinstance(value, int):
        return ["i", format(int(value), "x")]
    if isinstance(value, float):
        return ["f", float(value).hex()]
    if isinstance(value, complex):
        return ["c", value.real.hex(), value.imag.hex()]
    if isinstance(value, str):
        return ["s", str(value)]
    if isinstance(value, (bytes, bytearray)):
        return ["y", bytes(value).hex()]
    if depth < MAX_DEPTH:
        for kind, tag in ((list, "l"), (tuple, "t"), (set, "S"), (frozenset, "F")):
            if isinstance(value, kind) and len(value) <= MAX_ITEMS:
                return [tag, [encode(v, reference, depth + 1) for v in value]]
        if isinstance(value, dict) and len(value) <= MAX_ITEMS:
            return ["d", [[encode(k, reference, depth + 1), encode(v, reference, depth + 1)] for k, v in value.items()]]
    return ["r", reference(value)]


def decode(message, dereference, depth=0):
    """The value a tagged message encodes, built from builtin types only; ["r", n] is dereference(n)."""
    if depth > MAX_DEPTH + 1 or not isinstance(message, list) or not message:
        raise ProgramGone("sandbox: malformed value")
    tag, rest = message[0], message[1:]
    try:
        if tag == "n":
            return None
        if tag == "b":
            return bool(rest[0])
        if tag == "i":
            return int(rest[0], 16)
        if tag == "f":
            return float.fromhex(rest[0])
        if tag == "c":
            return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
        if tag == "s" and isinstance(rest[0], str):
            return str(rest[0])
        if tag == "y":
            return bytes.fromhex(rest[0])
        if tag == "r" and isinstance(rest[0], int):
            return dereference(rest[0])
        if tag == "d":
            return {decode(k, dereference, depth + 1): decode(v, dereference, depth + 1) for k, v in rest[0]}
        items = [decode(v, dereference, depth + 1) for v in rest[0]]
        return {"l": list, "t": tuple, "S": set, "F": frozenset}[tag](items)
    except ProgramGone:
        raise
    except Exception:
        raise ProgramGone(f"sandbox: malformed value of kind {str(tag)[:10]!r}") from None


# --------------------------------------------------------------------------------------------- program
def serve(namespace, requests, replies):
    """Answer the judge: look up names, call, read attributes of and iterate the program's objects."""
    table = []

    def keep(value):
        table.append(value)
        return len(table) - 1

    def lookup(index):
        if not 0 <= index < len(table):
            raise ValueError("unknown reference")
        return table[index]


    while True:
        try:
            request = receive(requests)
        except ProgramGone:
            return
        op = request[0]
        try:
            if op == "lookup":
                if request[1] not in namespace:
                    send(replies, ["missing"])
                    continue
                value = namespace[request[1]]
                if isinstance(value, types.ModuleType):
                    send(replies, ["module", value.__name__])
                    continue
            else:
                target = lookup(request[1])
                if op == "call":
                    args = decode(request[2], lookup)
                    kwargs = decode(request[3], lookup)
                    value = target(*args, **kwargs)
                elif op == "getattr":
                    value = getattr(target, request[2])
                elif op == "getitem":
                    value = target[decode(request[2], lookup)]
                elif op == "iter":
                    value = list(islice(iter(target), MAX_ITEMS + 1))
                    if len(value) > MAX_ITEMS:
                        raise ValueError("sandbox: iterable too long to pass")
                elif op == "len":
                    value = len(target)
                elif op == "bool":
                    value = bool(target)
                elif op == "repr":
                    value = repr(target)
                else:
                    raise ValueError(f"unknown request {op!r}")
            send(replies, ["ok", encode(value, keep)])
        except BaseException as error:  # the program's exception travels to the judge by name
            send(replies, ["raise", type(error).__name__, str(error)[:2000]])


# ----------------------------------------------------------------------------------------------- judge
class Channel:
    """The judge's end of the program's pipes."""
    def __init__(self, requests, replies):
        self.requests, self.replies = requests, replies

    def exchange(self, request):
        """The program's raw reply to one request."""
        send(self.requests, request)
        reply = receive(self.replies)
        if not isinstance(reply, list) or not reply:
            raise ProgramGone("sandbox: malformed reply")
        return reply

    def result(self, reply):
        """The value an "ok" reply carries, or the exception a "raise" reply names."""
        if reply[0] == "ok" and len(reply) == 2:
            return decode(reply[1], self.remote)
        if reply[0] == "raise" and len(reply) == 3:
            raise _exception(str(reply[1]), str(reply[2]))
        raise ProgramGone("sandbox: malformed reply")

    def ask(self, request):
        return self.result(self.exchange(request))

    def remote(self, reference):
        return Remote(self, reference)

    def argument(self, value):
        def refuse(obj):
            if isinstance(obj, Remote) and obj._channel is self:
                return obj._reference
            raise TypeError(f"sandbox: a {type(obj).__name__} cannot be passed to the program under test")
        return encode(value, refuse)


def _exception(name, message):
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        return kind(message)
    return RuntimeError(f"{name}: {message}")


class Remote:
    """An object that lives in the program under test. Equality and hashing are identity (never the
    program's), so a program cannot make a comparison succeed; calls and reads are forwarded."""

    __slots__ = ("_channel", "_reference")

    def __init__(self, channel, reference):
        self._channel, self._reference = channel, reference

    def _ask(self, op, *args):
        return self._channel.ask([op, self._reference, *args])

    def __call__(self, *args, **kwargs):
        return self._ask("call", self._channel.argument(list(args)), self._channel.argument(kwargs))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", name)

    def __getitem__(self, key):
        return self._ask("getitem", self._channel.argument(key))

    def __iter__(self):
        return iter(self._ask("iter"))

    def __len__(self):
        value = self._ask("len")
        if not isinstance(value, int):
            raise TypeError("len() of the program's object is not an int")
        return value

    def __bool__(self):
        return bool(self._ask("bool"))

    def __repr__(self):
        value = self._ask("repr")
        return value if isinstance(value, str) else "<object of the program under test>"

    __str__ = __repr__


class Names(dict):
    """The tests' globals: names the trusted code does not define come from the program, by lookup."""
    def __init__(self, channel):
        super().__init__(__name__="__main__", __builtins__=builtins)
        self.channel = channel

    def fetch(self, name):
        """The program's global ``name``: a proxy, a copy of its data, or our own import of a standard module."""
        reply = self.channel.exchange(["lookup", name])
        if reply == ["missing"]:
            raise NameError(f"name {name!r} is not defined")
        if reply[0] == "module":
            module = str(reply[1]) if len(reply) == 2 else ""
            if module.split(".")[0] not in sys.stdlib_module_names:
                raise NameError(f"name {name!r} is the program's module {module[:100]!r}, not a standard one")

            return importlib.import_module(module)
        return self.channel.result(reply)

    def __missing__(self, name):
        if hasattr(builtins, name) or name.startswith("__"):
            raise KeyError(name)  # builtins are looked up after the globals
        try:
            value = self.fetch(name)
        except NameError:
            raise KeyError(name) from None
        self[name] = value
        return value


def judge(task, requests, replies, verdict):
    channel = Channel(requests, replies)
    names = Names(channel)
    try:
        exec(compile(task["setup"], "setup", "exec"), names)
        for name in task["entry"]:
            names[name] = names.fetch(name)  # the program's, even where the setup defines a stub
        exec(compile(task["tests"], "tests", "exec"), names)
        outcome = {"passed": True}
    except BaseException:
        outcome = {"passed": False, "error": traceback.format_exc(limit=4)[-3000:]}
    send(verdict, outcome)


# ------------------------------------------------------------------------------------------------ main
def probe():
    """What the confinement achieved, as JSON on stdout."""
    facts = {"pid": os.getpid(), "proc": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
             "tmp": sorted(os.listdir("/tmp")), "writable_mounts": [], "caps": []}
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields = line.split()
            if "ro" not in fields[5].split(",") and fields[4] not in TMPFS:
                facts["writable_mounts"].append(fields[4])
    with open("/proc/self/status") as status:
        facts["caps"] = [line.split()[1] for line in status if line.startswith(("CapEff", "CapBnd"))]
    print(json.dumps(facts), flush=True)


def main(argv):
    role, confine = argv[0], argv[1]
    fds = [int(fd) for fd in argv[2:]]
    task = json.loads(sys.stdin.buffer.read() or b"{}")
    if confine == "ns":
        confine_namespaces(int(task.get("tmpfs_mb", 64)))
    root = os.getcwd()
    os.environ.update({"HOME": root, "TMPDIR": root})
    if role == "probe":
        return probe()
    install_guard([d for d in TMPFS if os.path.isdir(d)] if confine == "ns" else [root])
    if role == "judge":
        return judge(task, *fds)
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    code = task.pop("code")
    if role == "plain":
        marker = task.pop("marker")
        exec(compile(code, "program.py", "exec"), namespace)
        print(marker, flush=True)
        return None
    exec(compile(code, "program.py", "exec"), namespace)
    sys.stdout.flush()
    return serve(namespace, *fds)


if __name__ == "__main__":
    main(sys.argv[1:])
