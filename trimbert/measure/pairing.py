"""The paired timing loop of ``bench``: time every unit alternately, re-measure while a ratio is wide.

:func:`measure_paired` times the units (a model in one runtime each) in rounds
(:func:`trimbert.measure.benchmark.benchmark`) and takes, for every unit, its paired ratio against U*
(:func:`u_star`, the baseline in its fastest runtime) and for int8 units also against the baseline
in their own int8 runtime (:func:`references`); while one of those is wider than the tolerance it
adds rounds, up to ``max_seconds`` of :data:`_clock`. Ratios against every other runtime of the
baseline come from the same rounds (:func:`every_baseline_unit`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from trimbert.measure.bench_settings import INT8, OPENVINO_INT8, RUNTIME_SUFFIX, BenchSettings
from trimbert.measure.benchmark import BenchResult, benchmark, summarize
from trimbert.measure.stats import PairedRatio, paired_ratio

ProgressCallback = Callable[[str, int, int], None]
_clock = time.monotonic  # what max_seconds is held to (seconds); tests replace it, and benchmark, with fakes


def u_star(units: dict[str, Any], times: dict[str, list[float]], baseline: str | None) -> str | None:
    """U*: the baseline's unit (runtime) with the lowest median time in this run, any precision."""
    candidates = [name for name, unit in units.items() if unit.variant == baseline]
    if not candidates:
        return None
    return min(candidates, key=lambda name: statistics.median(times[name]))


def references(units: dict[str, Any], times: dict[str, list[float]], baseline: str | None) -> list[tuple[str, str]]:
    """(unit, the unit it is compared with): every unit with U* (:func:`u_star`), and int8 units also
    with the baseline in their own int8 runtime. These are the ratios the bench re-measures until
    they are narrow."""
    reference = u_star(units, times, baseline)
    if reference is None:
        return []
    pairs = [(name, reference) for name in units if name != reference]
    for runtime in (INT8, OPENVINO_INT8):
        same = baseline + RUNTIME_SUFFIX[runtime]
        if same in units and same != reference:
            pairs += [(name, same) for name, unit in units.items() if unit.runtime == runtime and name != same]
    return pairs


def every_baseline_unit(units: dict[str, Any], baseline: str | None) -> list[tuple[str, str]]:
    """(unit, baseline unit) for every unit and every runtime of the baseline: recorded too, so that a
    report that knows accuracies can take as U* the fastest deployment accurate enough
    (:mod:`trimbert.report.aggregate`), not only the fastest one."""
    references = [name for name, unit in units.items() if unit.variant == baseline]
    return [(name, reference) for reference in references for name in units if name != reference]


def measure_paired(
    units: dict[str, Any],
    settings: BenchSettings,
    mode: str,
    baseline: str | None,
    on_step: ProgressCallback | None,
) -> tuple[dict[str, BenchResult], dict[tuple[str, str], PairedRatio], str | None, set[tuple[str, str]]]:
    """Time ``units`` alternately in ``mode``; with a baseline, add rounds while a ratio is wide.
    Returns the results, the paired ratios (every unit vs every baseline unit), U* and the principal
    pairs (:func:`references`, the ones re-measured until narrow)."""
    modules = {name: unit.timed for name, unit in units.items()}
    start = _clock()
    times: dict[str, list[float]] = {name: [] for name in modules}
    peaks: dict[str, int | None] = dict.fromkeys(modules)
    warmup = settings.warmup
    while True:
        run = benchmark(
            modules,
            batch_size=settings.batch_size,
            seq_len=settings.seq_len,
            mode=mode,
            repeats=settings.repeats,
            warmup=warmup,
            device=settings.device,
            threads=settings.threads,
            on_step=on_step,
        )
        for name, result in run.items():
            times[name].extend(result.times_ms)
            if result.peak_memory_bytes is not None:
                peaks[name] = max(peaks[name] or 0, result.peak_memory_bytes)
        ratios = {
            (name, reference): paired_ratio(times[reference], times[name])
            for name, reference in references(units, times, baseline)
        }
        wide = [ratio for ratio in ratios.values() if not ratio.stable(settings.tolerance)]
        if not wide or _clock() - start >= settings.max_seconds:
            break
        warmup = 1  # the models are warm: one untimed round to settle after the pause
    principal = set(ratios)
    for pair in every_baseline_unit(units, baseline):
        if pair not in ratios:
            ratios[pair] = paired_ratio(times[pair[1]], times[pair[0]])
    results = {
        name: summarize(
            times[name], mode=mode, batch_size=settings.batch_size, seq_len=settings.seq_len, peak_memory_bytes=peaks[name]
        )
        for name in modules
    }
    return results, ratios, u_star(units, times, baseline), principal
