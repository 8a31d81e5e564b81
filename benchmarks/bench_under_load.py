"""The paired speed-up of a trim, on a quiet machine and under a competing CPU load, side by side.

Usage: python benchmarks/bench_under_load.py BASE_DIR TRIMMED_DIR [--busy 2] [--out FILE.json]

Runs ``bench TRIMMED --vs BASE`` twice in this process: once quiet, once while ``--busy`` processes
spin on the CPU (each stops by itself after a bounded time, and is killed when the run ends). Prints
both paired speed-ups with their 95% intervals and whether the loaded one is within 10% of the quiet
one or flagged unstable (the promise: never a confident wrong number).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from trimbert.measure.bench import BenchSettings, bench_models  # noqa: E402
from trimbert.model.checkpoint import load  # noqa: E402

# A busy loop that ends by itself after at most this many seconds (it is also killed at the end).
_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def measure(base: Path, trimmed: Path, settings: BenchSettings) -> dict:
    models = {"trimmed": (load(trimmed), str(trimmed)), "baseline": (load(base), str(base))}
    start = time.monotonic()
    report = bench_models(models, settings, baseline="baseline")
    latency = next(c for c in report.comparisons if c.quantity == "latency")
    return {
        "speedup": latency.ratio,
        "low": latency.low,
        "high": latency.high,
        "stable": latency.stable,
        "rounds": latency.rounds,
        "flop_ideal": latency.flop_ideal,
        "other_cpu": latency.other_cpu,
        "wall_s": time.monotonic() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", type=Path)
    parser.add_argument("trimmed", type=Path)
    parser.add_argument("--busy", type=int, default=2, help="competing busy processes")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = BenchSettings(batch_size=8, seq_len=128, repeats=15, warmup=3, threads=2, device="cpu")
    quiet = measure(args.base, args.trimmed, settings)
    spinners = [
        subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=900)]) for _ in range(args.busy)
    ]
    try:
        loaded = measure(args.base, args.trimmed, settings)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    drift = abs(loaded["speedup"] - quiet["speedup"]) / quiet["speedup"]
    verdict = "within 10%" if drift <= 0.10 else ("flagged unstable" if not loaded["stable"] else "WRONG AND CONFIDENT")
    for name, run in (("quiet", quiet), (f"{args.busy} busy processes", loaded)):
        print(
            f"{name:>18}: {run['speedup']:.3f}x [{run['low']:.3f}-{run['high']:.3f}] "
            f"{'stable' if run['stable'] else 'UNSTABLE'}, {run['rounds']} rounds, {run['wall_s']:.0f} s, "
            f"other processes took {100 * run['other_cpu']:.0f}% of the CPUs "
            f"(FLOP-ideal {run['flop_ideal']:.2f}x)"
        )
    print(f"loaded vs quiet: {100 * drift:.1f}% apart -> {verdict}")
    if args.out is not None:
        args.out.write_text(json.dumps({"quiet": quiet, "loaded": loaded, "drift": drift, "verdict": verdict}, indent=2))


if __name__ == "__main__":
    main()
