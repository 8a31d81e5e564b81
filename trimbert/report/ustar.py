"""U* among accurate deployments: re-base a report's speed-ups on the fastest untrimmed deployment that
loses at most :data:`WITHIN_POINTS` of the untrimmed fp32 model's metric.

A bench takes as U* the untrimmed model's fastest runtime, whatever its accuracy (it measures no
accuracy). When the report knows the accuracy of every runtime of the untrimmed model (a sweep
evaluates each export), a runtime that is fast because it loses accuracy (static int8 can) is not a
deployment a user would choose, and speed-ups against it flatter nothing but understate nothing honest
either. The bench records every unit's paired ratio against every runtime of the untrimmed model
(:attr:`Record.paired <trimbert.report.records.Record.paired>`); :func:`rebase` picks the fastest runtime within :data:`WITHIN_POINTS` and swaps each
row's paired speed-up for its ratio against that one. A row with no ratio against it loses its
speed-up (never a ratio of separately measured times).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

WITHIN_POINTS = 0.5  # U* may be at most this many points below the untrimmed fp32 metric

Ratio = tuple[float, float | None, float | None, bool | None]  # ratio, low, high, stable


def record_ratios(record: Any) -> dict[str, Ratio]:
    """A record's (:class:`~trimbert.report.records.Record`) latency ratios against every runtime of
    the untrimmed model it was timed beside: reference -> (ratio, low, high, stable)."""
    return {reference: ratio.figures() for reference, ratio in record.latency_ratios().items()}


def merge_ratios(per_record: Sequence[dict[str, Ratio]]) -> dict[str, Ratio]:
    """Over seeds: for each reference every record has, the mean ratio, the widest interval, stable only
    if every seed's was."""
    if not per_record:
        return {}
    shared = set.intersection(*(set(ratios) for ratios in per_record))
    merged: dict[str, Ratio] = {}
    for reference in sorted(shared):
        items = [ratios[reference] for ratios in per_record]
        lows, highs, stables = [item[1] for item in items], [item[2] for item in items], [item[3] for item in items]
        merged[reference] = (
            sum(item[0] for item in items) / len(items),
            None if None in lows else min(lows),
            None if None in highs else max(highs),
            None if None in stables else all(stables),
        )
    return merged


def rebase(rows: Iterable[Any], base: Any) -> str | None:
    """Re-base the rows' paired speed-ups on the fastest deployment of the untrimmed model ``base``
    within :data:`WITHIN_POINTS` of ``base``'s metric, when the measured U* is further below; returns
    a note saying what changed, or None when nothing did (U* accurate enough, accuracies or ratios
    unknown). Rows are :class:`~trimbert.report.aggregate.ReportRow` s (``variant``,
    ``main_value``, ``paired_speedup``, ``speedup_low``/``_high``/``_stable``, ``paired_baseline``,
    ``paired_vs``)."""
    rows = list(rows)
    if base is None or base.main_value is None:
        return None
    by_name = {row.variant: row for row in rows}
    measured = {row.paired_baseline for row in rows if row.paired_baseline and row.paired_speedup is not None}
    if len(measured) != 1:
        return None
    star = by_name.get(next(iter(measured)))
    if star is None or star.main_value is None:
        return None
    floor = base.main_value - WITHIN_POINTS / 100
    if star.main_value >= floor:
        return None
    family = [
        row
        for row in rows
        if row.variant.split("@")[0] == base.variant and row.ok and row.main_value is not None
        and row.main_value >= floor and (row is star or row.paired_speedup is not None)
    ]
    if not family:
        return None
    chosen = max(family, key=lambda row: 1.0 if row is star else row.paired_speedup)
    faster = chosen.paired_speedup
    for row in rows:
        if row.paired_speedup is None and row is not star:
            continue
        if row is chosen:
            figures: Ratio | None = (1.0, 1.0, 1.0, True)
        else:
            figures = row.paired_vs.get(chosen.variant)
        if figures is None:
            row.paired_speedup = row.speedup_low = row.speedup_high = row.speedup_stable = None
            row.paired_baseline = None
            continue
        row.paired_speedup, row.speedup_low, row.speedup_high, row.speedup_stable = figures
        row.paired_baseline = chosen.variant
    return (
        f"U* is {chosen.variant} ({base.main_metric} {chosen.main_value:.4f}), the fastest deployment of the "
        f"untrimmed model within {WITHIN_POINTS:g} points of its fp32 {base.main_metric} "
        f"({base.main_value:.4f}); {star.variant} was {1 / faster:.2f}× faster but "
        f"{100 * (base.main_value - star.main_value):.2f} points below"
    )
