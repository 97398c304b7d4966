"""Test-session setup: the framework's own thread rule for the test workers.

pytest-xdist runs one worker per core; with torch's default of one OpenMP thread per core in each, the
workers (and the ranks and runs they launch, which inherit OMP_NUM_THREADS) spin against each other.
"""

import os

from nexus_pretrain.threads import set_default_threads

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    set_default_threads(concurrent=int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
