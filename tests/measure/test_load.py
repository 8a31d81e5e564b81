"""CpuWatch: the CPU share other processes took during a run."""

import subprocess
import sys
import time

import psutil
import pytest

from trimbert.measure.load import CpuWatch

SPIN = "import time\nend = time.monotonic() + 3\nwhile time.monotonic() < end:\n    pass\n"


def test_a_busy_process_is_seen_and_our_own_work_is_not():
    watch = CpuWatch().start()
    end = time.monotonic() + 0.5
    while time.monotonic() < end:  # our own busy loop does not count
        pass
    own = watch.stop()
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(0.5)  # let it start
        watch = CpuWatch().start()
        time.sleep(1.5)
        others = watch.stop()
    finally:
        spinner.kill()
        spinner.wait()
    cores = psutil.cpu_count()
    assert others >= 0.5 / cores  # one spinning process is about one core of the machine
    assert others > own


def test_stop_before_start_is_a_bug():
    with pytest.raises(RuntimeError, match="before start"):
        CpuWatch().stop()
