"""How busy the machine was during a timed run: the CPU share other processes took.

A paired ratio cancels a slowdown that hits both models alike, but contention for the cores does not
hit them alike (measured here: 1.82× quiet, 1.60× under two busy processes, with an interval just as
narrow), so a narrow interval alone is no proof. :class:`CpuWatch` reads the system-wide and this
process's CPU times (``psutil``) around a run; :attr:`CpuWatch.others_share` is the share of all CPUs
that other processes used meanwhile. A run above the bench's ``max_other_cpu`` is flagged. The readings
(system busy seconds, own busy seconds, the clock, the CPU count) can be passed in, so that tests
drive the arithmetic with fixed readings instead of the machine's load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

_BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")


def _system_busy() -> float:
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in _BUSY_FIELDS)


def _own_busy() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


class CpuWatch:
    """Measures what other processes took of the CPUs between :meth:`start` and :meth:`stop`."""

    def __init__(
        self,
        *,
        system_busy: Callable[[], float] = _system_busy,
        own_busy: Callable[[], float] = _own_busy,
        clock: Callable[[], float] = time.monotonic,
        cpus: Callable[[], int | None] = psutil.cpu_count,
    ) -> None:
        self.others_share = 0.0
        self._start: tuple[float, float, float] | None = None
        self._system_busy, self._own_busy, self._clock, self._cpus = system_busy, own_busy, clock, cpus

    def start(self) -> CpuWatch:
        self._start = (self._system_busy(), self._own_busy(), self._clock())
        return self

    def stop(self) -> float:
        """The share (0 to 1) of all CPUs' time that other processes used since :meth:`start`."""
        if self._start is None:
            raise RuntimeError("CpuWatch.stop() before start()")
        system, own, then = self._start
        elapsed = (self._clock() - then) * (self._cpus() or 1)
        others = (self._system_busy() - system) - (self._own_busy() - own)
        self.others_share = min(max(others / elapsed, 0.0), 1.0) if elapsed > 0 else 0.0
        return self.others_share
