"""The report's columns: what each shows, how a cell is formatted, and the legend under the table.

One list of :class:`Column` drives the rich table, the Markdown table and the CSV header, so the
three always agree; a new report column goes here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trimbert.report.aggregate import ReportRow, ReportTable
from trimbert.report.pareto import COSTS, PARETO_MARK

MISSING = "–"  # a cell without a value


@dataclass(frozen=True)
class Column:
    """One report column: its header, the ReportRow fields it stands for, and its display text.

    ``fields`` are the raw CSV columns, in order; ``metric:NAME`` and ``metric_std:NAME`` name the
    entries of ``metrics`` and ``metrics_std``. A column without ``cell`` is only in the CSV.
    """

    header: str
    fields: tuple[str, ...]
    cell: Callable[[ReportRow], str] | None = None
    justify: str = "right"
    only_if: Callable[[Sequence[ReportRow]], bool] | None = None  # shown only when true of the rows


def _number(value: float | None, digits: int, std: float | None = None) -> str:
    if value is None:
        return MISSING
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _times(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}×"


def _paired_cell(value: float | None, low: float | None, high: float | None, stable: bool | None) -> str:
    """A paired speed-up with its 95% interval (``[?]`` for an older record without one)."""
    if value is None:
        return MISSING
    interval = "[?]" if low is None or high is None else f"[{low:.2f}–{high:.2f}]"
    return f"{value:.2f}× {interval}" + (" unstable" if stable is False else "")


def _scaled(value: float | None, unit: float, digits: int) -> str:
    return _number(None if value is None else value / unit, digits)


def _variant_cell(row: ReportRow) -> str:
    return f"{row.variant} {PARETO_MARK}" if row.pareto else row.variant


def _status_cell(row: ReportRow) -> str:
    error = " ".join((row.error or "").split())
    if len(error) > 80:
        error = error[:79] + "…"
    if not row.ok:
        return f"failed: {error}"
    return f"ok, {row.failed} failed: {error}" if row.failed else "ok"


def _metric_column(name: str) -> Column:
    return Column(
        name,
        (f"metric:{name}", f"metric_std:{name}"),
        lambda row: _number(row.metrics.get(name), 3, row.metrics_std.get(name)),
    )


def columns(metric_names: Sequence[str]) -> list[Column]:
    """The report's columns for these metrics (main metric first), displayed and CSV-only."""
    return [
        Column("variant", ("variant", "is_baseline", "pareto"), _variant_cell, "left"),
        Column("trim", ("trim_summary", "trim"), lambda row: row.trim_summary, "left"),
        *(_metric_column(name) for name in metric_names),
        Column(
            "Δ pts",
            ("delta_points",),
            lambda row: MISSING if row.delta_points is None else f"{row.delta_points:+.2f}",
        ),
        Column("params M", ("params",), lambda row: _scaled(row.params, 1e6, 2)),
        Column("params ×", ("params_ratio",), lambda row: _times(row.params_ratio)),
        Column("disk MB", ("disk_bytes",), lambda row: _scaled(row.disk_bytes, 1e6, 1)),
        Column("GFLOPs", ("flops_per_seq",), lambda row: _scaled(row.flops_per_seq, 1e9, 2)),
        Column("FLOPs ↓", ("flops_reduction",), lambda row: _times(row.flops_reduction)),
        Column(
            "latency ms",
            ("latency_ms", "latency_std"),
            lambda row: _number(row.latency_ms, 1, row.latency_std),
        ),
        Column(
            "speedup",
            ("speedup", "paired_speedup", "paired_baseline", "speedup_low", "speedup_high", "speedup_stable"),
            lambda row: _paired_cell(row.speedup, row.speedup_low, row.speedup_high, row.speedup_stable),
        ),
        Column(
            "train s",
            ("train_time_s", "train_time_std"),
            lambda row: _number(row.train_time_s, 0, row.train_time_std),
        ),
        Column(
            "heal s",
            ("heal_time_s",),
            lambda row: _number(row.heal_time_s, 0),
            only_if=lambda rows: any(row.heal_time_s is not None for row in rows),
        ),
        Column(
            "train speedup",
            ("train_speedup", "paired_train_speedup", "train_speedup_low", "train_speedup_high", "train_speedup_stable"),
            lambda row: _paired_cell(
                row.train_speedup, row.train_speedup_low, row.train_speedup_high, row.train_speedup_stable
            ),
        ),
        Column("seeds", ("seeds",), lambda row: str(row.seeds) if row.seeds else MISSING),
        Column("status", ("status", "failed", "error"), _status_cell, "left"),
        Column("setup", ("model", "task", "main_metric", "device", "batch_size", "seq_len")),
    ]


def shown_columns(table: ReportTable) -> list[Column]:
    return [
        column
        for column in columns(table.metric_names)
        if column.cell is not None and (column.only_if is None or column.only_if(table.rows))
    ]


def legend(table: ReportTable) -> list[str]:
    """Lines explaining the baseline, the ratios, the Pareto mark, and the caveats."""
    metric = table.main_metric or "metric"
    cost = COSTS.get(table.pareto_cost or "")
    lines = []
    if table.baseline is not None:
        lines.append(
            f"Baseline: {table.baseline}. Δ pts = 100 × ({metric} − baseline {metric}); params × = params / "
            "baseline params; FLOPs ↓, speedup and train speedup = baseline value / this value (above 1 is cheaper)."
        )
        lines.append(
            "Speed-ups are paired: the median over rounds of baseline time / variant time, both timed "
            "alternately in one run, with its 95% bootstrap interval; \"unstable\" = the interval stayed "
            "wider than the bench tolerance after re-measuring. Train speedup = one training step, paired "
            "the same way (train s, the fine-tune wall time, is not paired). Speed-ups of models not "
            "measured side by side with the baseline are not shown."
        )
    if any(row.heal_time_s is not None for row in table.rows):
        lines.append(
            "heal s = wall time of the heal before fine-tuning (task-agnostic distillation on unlabeled text), "
            "paid once per trim and healing and shared by every seed and variant that uses it."
        )
    if table.pareto_cost is not None:
        lines.append(
            f"{PARETO_MARK} = Pareto-optimal on {metric} vs {cost}: no other variant has at least the same "
            f"{metric} at no more {cost} and is better on one of them."
        )
    return lines + [f"Note: {note}" for note in table.notes]


# --------------------------------------------------------------------------------------------------
# Rendering and writing
