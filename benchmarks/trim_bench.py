"""Time `trimbert trim` on a checkpoint and report its wall time and peak RSS.

Usage: python benchmarks/trim_bench.py CHECKPOINT [trim options...]
Runs the real CLI in a child process (so the numbers include start-up and imports) and compares the
child's peak resident memory with the size of the checkpoint's weights.
"""

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    checkpoint = Path(sys.argv[1])
    options = sys.argv[2:] or ["--drop-ffn", "0-7"]
    weights = sum(p.stat().st_size for p in checkpoint.glob("*.safetensors"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "trimmed"
        command = [sys.executable, "-m", "trimbert", "trim", str(checkpoint), "--out", str(out), *options]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - start
        trimmed = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    print(f"checkpoint weights : {weights / 1e6:8.1f} MB")
    print(f"trimmed weights    : {trimmed / 1e6:8.1f} MB")
    print(f"wall time          : {wall:8.2f} s   (target < 15 s)")
    print(f"peak RSS           : {peak_rss / 1e6:8.1f} MB = {peak_rss / weights:.2f}x the checkpoint (target < 3x)")


if __name__ == "__main__":
    main()
