"""The caveats printed under a report table: no baseline, a failed one, mixed measuring conditions,
what the speed-ups are against (U*) and int8 models' speed-ups over the untrimmed int8 model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def notes(rows: Sequence[Any], base: Any | None) -> list[str]:
    """The notes of a report whose rows (:class:`~trimbert.report.aggregate.ReportRow`) are compared
    with ``base``."""
    found = []
    if base is None:
        found.append("no untrimmed variant found: pass --baseline NAME to compare against one")
    elif not base.ok:
        found.append(f"the baseline {base.variant} failed: {base.error}")
    setups = {(row.device, row.batch_size, row.seq_len) for row in rows if row.latency_ms is not None}
    if len(setups) > 1:
        described = "; ".join(
            f"{device or '?'}, batch {batch or '?'}, seq {seq or '?'}"
            for device, batch, seq in sorted(setups, key=str)
        )
        found.append(f"latencies were measured under different conditions ({described}): speedups mix them")
    found += _u_star_notes(rows, base)
    for row in rows:
        if row.int8_speedup is not None:
            found.append(f"{row.variant}: {row.int8_speedup:.2f}× the speed of {row.int8_baseline}")
    return found


def _u_star_notes(rows: Sequence[Any], base: Any | None) -> list[str]:
    references = sorted({row.paired_baseline for row in rows if row.speedup is not None and row.paired_baseline})
    if not (any("@" in row.variant for row in rows) or any("@" in reference for reference in references)):
        return []
    by_name = {row.variant: row for row in rows}
    described = []
    for reference in references:
        star = by_name.get(reference)
        value = star.main_value if star is not None else None
        described.append(reference + (f", {star.main_metric} {value:.4f}" if value is not None else ""))
    found = [
        f"speed-ups are against U*, the untrimmed model at its fastest deployment measured (within 0.5 points of "
        f"its fp32 metric where the runtimes' accuracies are known: {'; '.join(described)}); "
        "NAME@ort rows ran in ONNX Runtime fp32, NAME@ort-int8 in ONNX Runtime int8, NAME@ov in OpenVINO fp32, "
        "NAME@ov-int8 in OpenVINO int8 (NNCF), with the accuracy of the exported model"
    ]
    if base is not None and base.main_value is not None:
        for reference in references:
            star = by_name.get(reference)
            if star is not None and star.main_value is not None and base.main_value - star.main_value > 0.005:
                loss = 100 * (base.main_value - star.main_value)
                found.append(
                    f"U* ({reference}) is {loss:.2f} points below the untrimmed fp32 model: a deployment "
                    "within 0.5 points would be slower, so these speed-ups understate the gain over it"
                )
    return found
