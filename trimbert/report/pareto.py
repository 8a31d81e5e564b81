"""The Pareto front of a report: the variants no other beats on both the main metric and a cost.

:func:`pareto_front` works on (metric, cost) points; :func:`mark_pareto` marks a report's rows on
the first cost of :data:`COSTS` that every timed row has, and says which it used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# What the Pareto front and the plots weigh the main metric against: ReportRow field -> words.
# "relative_latency" (1 / speedup) comes first: it is the latency ratio to the baseline, paired (measured
# side by side) where the records have that, so variants timed at different moments still compare.
COSTS = {"relative_latency": "latency", "latency_ms": "latency", "params": "parameters"}
PARETO_MARK = "★"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices, ascending, of the Pareto-optimal points (maximize the first value, minimize the second).

    A point is dominated when another is at least as good on both values and strictly better on
    one; equal points do not dominate each other, so all of them stay on the front.
    """
    return [
        i
        for i, (metric, cost) in enumerate(points)
        if not any(
            m >= metric and c <= cost and (m > metric or c < cost)
            for j, (m, c) in enumerate(points)
            if j != i
        )
    ]


def frontier_candidates(rows: Sequence[Any], cost_field: str) -> list[Any]:
    """The ok rows (:class:`~trimbert.report.aggregate.ReportRow`) with a finite main metric and a
    finite ``cost_field``."""
    return [
        row
        for row in rows
        if row.ok
        and row.main_value is not None
        and math.isfinite(row.main_value)
        and (cost := getattr(row, cost_field)) is not None
        and math.isfinite(cost)
    ]


def mark_pareto(rows: Sequence[Any]) -> str | None:
    """Mark the Pareto-optimal rows (``row.pareto = True``) on the first cost of :data:`COSTS` they
    have (the paired relative latency only when every timed row has one); return that cost's field."""
    timed = len(frontier_candidates(rows, "latency_ms"))
    for cost_field in COSTS:
        candidates = frontier_candidates(rows, cost_field)
        if cost_field == "relative_latency" and len(candidates) < timed:
            continue  # not every timed row was measured side by side with the baseline
        if candidates:
            points = [(row.main_value, getattr(row, cost_field)) for row in candidates]
            for index in pareto_front(points):
                candidates[index].pareto = True
            return cost_field
    return None
