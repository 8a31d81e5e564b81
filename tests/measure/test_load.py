"""CpuWatch: the CPU share other processes took during a run."""

from types import SimpleNamespace

import pytest

import trimbert.measure.load as load
from trimbert.measure.load import CpuWatch


def readings(*values):
    """A reader that returns ``values`` one call after the other (a start, then a stop)."""
    return iter(values).__next__


def watch(system, own, clock, cpus=4):
    return CpuWatch(system_busy=readings(*system), own_busy=readings(*own), clock=readings(*clock), cpus=lambda: cpus)


def test_others_share_is_their_busy_time_over_all_cpus_time():
    # 2 s on 4 CPUs = 8 CPU-seconds; the system was busy 6 of them, 1.5 of which were ours: others took 4.5 / 8
    assert watch(system=(100.0, 106.0), own=(10.0, 11.5), clock=(50.0, 52.0)).start().stop() == 0.5625
    # our own work is not counted: the system was busy exactly as long as we were
    assert watch(system=(100.0, 104.0), own=(10.0, 14.0), clock=(50.0, 52.0)).start().stop() == 0.0
    measured = watch(system=(0.0, 3.0), own=(0.0, 0.0), clock=(0.0, 2.0), cpus=None).start()  # unknown count: 1 CPU
    assert measured.stop() == 1.0 and measured.others_share == 1.0


def test_the_share_is_clamped_to_0_to_1_and_0_without_elapsed_time():
    assert watch(system=(0.0, 20.0), own=(0.0, 1.0), clock=(0.0, 2.0)).start().stop() == 1.0  # readings out of step
    assert watch(system=(0.0, 1.0), own=(0.0, 3.0), clock=(0.0, 2.0)).start().stop() == 0.0  # children counted late
    assert watch(system=(0.0, 5.0), own=(0.0, 0.0), clock=(7.0, 7.0)).start().stop() == 0.0


def test_the_readings_are_busy_cpu_times_system_wide_and_ours_with_our_children(monkeypatch):
    system = SimpleNamespace(user=1.0, nice=2.0, system=4.0, idle=1000.0, iowait=500.0, irq=8.0, softirq=16.0, steal=32.0)
    monkeypatch.setattr(load.psutil, "cpu_times", lambda: system)
    assert load._system_busy() == 63.0  # idle and iowait are not busy
    del system.steal  # a platform without a field
    assert load._system_busy() == 31.0
    own = SimpleNamespace(user=1.0, system=2.0, children_user=4.0, children_system=8.0)
    monkeypatch.setattr(load.psutil, "Process", lambda: SimpleNamespace(cpu_times=lambda: own))
    assert load._own_busy() == 15.0


def test_stop_before_start_is_a_bug():
    with pytest.raises(RuntimeError, match="before start"):
        CpuWatch().stop()
