"""How busy the machine was during a timed run: the CPU share other processes took.

A paired ratio cancels a slowdown that hits both models alike, but contention for the cores does not
hit them alike (measured here: 1.82× quiet, 1.60× under two busy processes, with an interval just as
narrow), so a narrow interval alone is no proof. :class:`CpuWatch` reads the system-wide and this
process's CPU times (``psutil``) around a run; :attr:`CpuWatch.others_share` is the share of all CPUs
that other processes used meanwhile. A run above the bench's ``max_other_cpu`` is flagged.
"""

from __future__ import annotations

import time

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

    def __init__(self) -> None:
        self.others_share = 0.0
        self._start: tuple[float, float, float] | None = None

    def start(self) -> CpuWatch:
        self._start = (_system_busy(), _own_busy(), time.monotonic())
        return self

    def stop(self) -> float:
        """The share (0 to 1) of all CPUs' time that other processes used since :meth:`start`."""
        if self._start is None:
            raise RuntimeError("CpuWatch.stop() before start()")
        system, own, then = self._start
        elapsed = (time.monotonic() - then) * (psutil.cpu_count() or 1)
        others = (_system_busy() - system) - (_own_busy() - own)
        self.others_share = min(max(others / elapsed, 0.0), 1.0) if elapsed > 0 else 0.0
        return self.others_share
