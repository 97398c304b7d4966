"""The errors a user fixes, each with a one-line message naming the key or path and the fix: a bad
configuration (ConfigError) and a run that cannot start or continue (RunError). In a module of their own,
importing nothing of the package, so that any subpackage can raise them (the config imports some of them)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and how to fix it."""


class RunError(RuntimeError):
    """A run cannot start or continue as asked; the message is one line naming the path and the fix."""


def os_error_cause(error: BaseException) -> Optional[OSError]:
    """The operating-system error behind ``error`` (itself, a cause, or a failure DCP collected from a
    rank), when it has an errno; None otherwise."""
    seen = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        stack.extend([e.__cause__, e.__context__])
        for failure in getattr(e, "failures", {}).values():  # torch.distributed.checkpoint's CheckpointException
            stack.append(failure[0] if isinstance(failure, tuple) else failure)
    return None


def write_failed(what: str, path: Path, error: OSError, fix: str) -> RunError:
    """A one-line RunError for an OSError while writing ``what`` at ``path``: the reason (e.g. no space
    left on device), the file the system named, and ``fix``."""
    reason = os.strerror(error.errno) if error.errno else str(error)
    name = errno.errorcode.get(error.errno, "")
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(path) else ""
    return RunError(f"writing {what} {path} failed: {reason}{f' [{name}]' if name else ''}{where}; {fix}")
