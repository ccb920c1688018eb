"""How the command line's OpenMP threads wait between parallel operations.

A training step runs some hundred small parallel operations. Between two of them the
worker threads either spin (fast when the cores are free) or sleep (and are woken, some
50 us each time). Measured on 2 cores, MAF training steps (D=257, 10 flows, batch 100):

===========================  ============  ======================
waiting                      idle machine  2 other busy processes
===========================  ============  ======================
libgomp default (spin)       33 ms         430-480 ms
``GOMP_SPINCOUNT=10000``     35 ms         114-155 ms
``OMP_WAIT_POLICY=PASSIVE``  58 ms         81-84 ms
===========================  ============  ======================

So the command line picks by how busy the machine is when it starts: passive waiting when
other work keeps half the cores or more busy, a short spin otherwise (the FSDD "zero" fit:
14.3 s -> 10.9 s on an idle machine). Busy is measured over 0.1 s from ``/proc/stat``
(the load average lags by minutes: right after a fit it still counts that fit), or taken
from the load average where there is no ``/proc/stat`` (inside a container ``/proc/stat``
may count the whole host's cores: the share, not a count, is compared). A setting already
in the environment wins. This must run before torch is imported: OpenMP reads these once.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping

__all__ = [
    "apply_openmp_wait_settings",
    "busy_share",
    "measured_busy_share",
    "openmp_wait_settings",
]

_SET_BY_USER = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SHORT_SPIN = "10000"  # spin iterations before sleeping (libgomp's default is 300,000)
WINDOW_S = 0.1  # how long the command line watches /proc/stat at start


def openmp_wait_settings(environ: Mapping[str, str], busy: float) -> dict[str, str]:
    """Environment variables to add for OpenMP waiting; empty when the user chose already.

    Args:
        environ: The current environment.
        busy: Share of the machine's CPU time other work takes, 0-1 (``nan`` if unknown).

    Returns:
        ``{"OMP_WAIT_POLICY": "PASSIVE"}`` when other work takes half the cores or more
        (or nobody knows), else ``{"GOMP_SPINCOUNT": "10000"}``.
    """
    if any(name in environ for name in _SET_BY_USER):
        return {}
    if not busy < 0.5:  # busy, or unknown (nan)
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"GOMP_SPINCOUNT": SHORT_SPIN}


def busy_share(before: str, after: str) -> float:
    """The share of CPU time not idle between two readings of ``/proc/stat``'s ``cpu`` line.

    Fields: ``cpu user nice system idle iowait irq softirq steal [guest guest_nice]``;
    idle and iowait count as idle, guest time is already inside user time. ``nan`` when
    no time passed or a line cannot be read.
    """
    try:
        a = [int(v) for v in before.split()[1:9]]
        b = [int(v) for v in after.split()[1:9]]
    except ValueError:
        return math.nan
    if len(a) < 5 or len(b) != len(a):
        return math.nan
    total = sum(b) - sum(a)
    idle = (b[3] + b[4]) - (a[3] + a[4])
    return (total - idle) / total if total > 0 else math.nan


def _cpu_line() -> str | None:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return stat.readline()
    except OSError:
        return None


def measured_busy_share(window_s: float = WINDOW_S) -> float:
    """How busy the machine is now (this process sleeps meanwhile), 0-1; ``nan`` unknown."""
    before = _cpu_line()
    if before is not None:
        time.sleep(window_s)
        after = _cpu_line()
        if after is not None:
            return busy_share(before, after)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    try:
        return os.getloadavg()[0] / max(cpus, 1)
    except (AttributeError, OSError):  # not on every platform
        return math.nan


def apply_openmp_wait_settings() -> dict[str, str]:
    """Set :func:`openmp_wait_settings` for this process; returns what was set."""
    if any(name in os.environ for name in _SET_BY_USER):
        return {}  # the user's choice: nothing to measure
    settings = openmp_wait_settings(os.environ, measured_busy_share())
    os.environ.update(settings)
    return settings
