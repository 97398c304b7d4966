"""CPU threads per process: the cores this process may use, shared out over the processes on this machine.

Several torch processes each running one OpenMP thread per core spin against each other: on 2 busy
cores, two concurrent tiny runs with torch's default threads took several times longer than with one
thread each (docs/performance.md). The launchers (nexus-train, nexus-eval, the demo's runs) therefore set
the intra-op threads to cores / local processes, unless the user chose with OMP_NUM_THREADS.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Optional

ENV = "OMP_NUM_THREADS"


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under taskset or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_processes(environ: Optional[Mapping[str, str]] = None) -> int:
    """Processes of this job on this machine: torchrun's LOCAL_WORLD_SIZE, else 1."""
    environ = os.environ if environ is None else environ
    try:
        return max(1, int(environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def threads_per_process(processes: int = 1, cores: Optional[int] = None) -> int:
    """Intra-op threads for each of ``processes`` concurrent processes: the cores shared out, at least 1."""
    return max(1, (cpu_cores() if cores is None else cores) // max(1, processes))


def set_default_threads(concurrent: int = 1) -> Optional[int]:
    """Unless OMP_NUM_THREADS is set, set it (for this process and its children) to the cores divided by
    the local processes times ``concurrent`` (runs this launcher starts side by side) and return it; None
    when the user's setting stands. Call before torch is imported; if it already is, its pool is resized."""
    if os.environ.get(ENV, "").strip():
        return None
    threads = threads_per_process(local_processes() * concurrent)
    os.environ[ENV] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads
