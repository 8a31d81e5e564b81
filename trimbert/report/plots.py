"""The report's plots (metric vs latency, metric vs parameters) with matplotlib, off-screen.
"""

from __future__ import annotations

import io

from trimbert.report.aggregate import ReportTable
from trimbert.report.pareto import COSTS, frontier_candidates, pareto_front


def latency_label(table: ReportTable) -> str:
    setups = {(row.batch_size, row.seq_len) for row in table.rows if row.latency_ms is not None}
    if len(setups) == 1:
        batch, seq = setups.pop()
        if batch and seq:
            return f"latency (ms, batch {batch} × {seq} tokens)"
    return "latency (ms)"


def _x_error(row, cost_field: str, x: float) -> tuple[float, float]:
    """(left, right) error bar: the paired interval of 1/speedup, or ± the latency std over seeds."""
    if cost_field == "relative_latency" and row.speedup_low and row.speedup_high:
        return max(x - 1.0 / row.speedup_high, 0.0), max(1.0 / row.speedup_low - x, 0.0)
    if cost_field == "latency_ms" and row.latency_std is not None:
        return row.latency_std, row.latency_std
    return 0.0, 0.0


def plot(table: ReportTable, cost_field: str, xlabel: str) -> bytes | None:
    """A PNG of the main metric against ``cost_field`` for the ok rows, or None without points."""
    scale = 1e6 if cost_field == "params" else 1.0
    rows = frontier_candidates(table.rows, cost_field)
    if not rows:
        return None
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import

    xs = [getattr(row, cost_field) / scale for row in rows]
    ys = [row.main_value for row in rows]
    x_err = [_x_error(row, cost_field, x) for row, x in zip(rows, xs, strict=True)]
    y_std = [row.main_std for row in rows]

    fig = Figure(figsize=(7, 5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    if any(e != (0.0, 0.0) for e in x_err) or any(s is not None for s in y_std):
        ax.errorbar(
            xs,
            ys,
            xerr=[[e[0] for e in x_err], [e[1] for e in x_err]],
            yerr=[s or 0.0 for s in y_std],
            fmt="none",
            ecolor="0.6",
            elinewidth=1,
            capsize=3,
            zorder=1,
        )
    ax.scatter(xs, ys, color="C0", zorder=2, label="variants")
    unstable = [i for i, row in enumerate(rows) if cost_field == "relative_latency" and row.speedup_stable is False]
    if unstable:
        ax.scatter(
            [xs[i] for i in unstable],
            [ys[i] for i in unstable],
            marker="x",
            color="C1",
            zorder=3,
            label="unstable speed-up (interval > tolerance)",
        )
    front = sorted(pareto_front(list(zip(ys, xs, strict=True))), key=lambda i: (xs[i], ys[i]))
    ax.step(
        [xs[i] for i in front],
        [ys[i] for i in front],
        where="post",
        color="C2",
        zorder=1,
        label="Pareto frontier",
    )
    for row, x, y in zip(rows, xs, ys, strict=True):
        if row.is_baseline:
            ax.scatter(
                [x],
                [y],
                s=140,
                facecolors="none",
                edgecolors="C3",
                linewidths=2,
                zorder=3,
                label=f"baseline ({row.variant})",
            )
        ax.annotate(row.variant, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
    metric = table.main_metric or "metric"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} ({table.task})" if table.task else metric)
    ax.set_title(f"{metric} vs {COSTS[cost_field]}" + (f" — {table.task}" if table.task else ""))
    ax.margins(0.08)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
