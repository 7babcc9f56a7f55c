"""Settings every test process shares.

`make test` runs two pytest-xdist workers on the two cores of the CI machine. Each worker (and
every subprocess it starts) gets one intra-op thread: two workers with two OpenMP threads each
oversubscribe the cores, and OpenMP's spin-waiting then burns CPU time the other worker needs.
"""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
