"""CPU threads per process: the cores this process may use and other work leaves free, shared out over the
processes this launcher starts on the machine.

Several torch processes each running one OpenMP thread per core spin against each other: on 2 cores, two
concurrent tiny runs with torch's default threads ran 2-10x slower than with one thread each, and one run
with both cores ran slower than with one while other jobs kept the machine busy (docs/performance.md).
The launchers (nexus-train, nexus-eval, nexus-analyze, the demo's runs) therefore set the intra-op
threads to the free cores divided by the local processes, unless the user chose with OMP_NUM_THREADS.
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


def busy_cores(cores: int) -> float:
    """Cores that other work keeps busy: the 1-minute load average, scaled to the share of the machine's CPUs
    this process may run on (0 where the platform reports no load)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0
    return load * cores / max(os.cpu_count() or cores, cores)


def free_cores() -> int:
    """The cores this process may run on less those other work keeps busy, at least 1."""
    cores = cpu_cores()
    return max(1, cores - round(busy_cores(cores)))


def local_processes(environ: Optional[Mapping[str, str]] = None) -> int:
    """Processes of this job on this machine: torchrun's LOCAL_WORLD_SIZE, else 1."""
    environ = os.environ if environ is None else environ
    try:
        return max(1, int(environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def threads_per_process(processes: int = 1, cores: Optional[int] = None) -> int:
    """Intra-op threads for each of ``processes`` concurrent processes: ``cores`` (default: the free cores)
    shared out, at least 1."""
    return max(1, (free_cores() if cores is None else cores) // max(1, processes))


def set_default_threads(concurrent: int = 1) -> Optional[int]:
    """Unless OMP_NUM_THREADS is set, set it (for this process and its children) to the free cores divided by
    the local processes times ``concurrent`` (runs this launcher starts side by side) and return it; None
    when the user's setting stands. Call before torch is imported; if it already is, its pool is resized."""
    if os.environ.get(ENV, "").strip():
        return None
    threads = threads_per_process(local_processes() * concurrent)
    os.environ[ENV] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads
