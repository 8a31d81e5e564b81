"""The report's "what to deploy" section: every variant in every runtime measured, against U*.

A report whose rows include exported runtimes (``NAME@ort``, ``NAME@ort-int8``, ``NAME@ov``,
``NAME@ov-int8``) answers the user's question "what should I deploy?": one row per variant and runtime
with its accuracy (of that runtime's model), latency, and paired speed-up over U* (the untrimmed model
at its fastest deployment measured, within 0.5 points of its fp32 metric where the runtimes'
accuracies are known: :mod:`trimbert.report.ustar`), fastest first; the rows within
one point of the untrimmed fp32 model's metric are marked; and a plot of metric vs latency with one
marker and colour per runtime.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from trimbert.report.aggregate import ReportTable
from trimbert.report.plots import latency_label

SUFFIX_RUNTIME = {"": "PyTorch", "ort": "ONNX Runtime fp32", "ort-int8": "ONNX Runtime int8", "ov": "OpenVINO fp32", "ov-int8": "OpenVINO int8"}
WITHIN_POINTS = 1.0  # a deployable row: at most this many points below the untrimmed fp32 metric


@dataclass
class DeployRow:
    variant: str  # without the runtime suffix
    runtime: str  # "PyTorch", "OpenVINO int8", ...
    metric: float | None
    delta_points: float | None  # vs the untrimmed fp32 (PyTorch) metric
    latency_ms: float | None
    speedup: float | None  # paired, over U*
    low: float | None
    high: float | None
    stable: bool | None
    is_u_star: bool


def split_runtime(name: str) -> tuple[str, str]:
    variant, _, suffix = name.partition("@")
    return variant, SUFFIX_RUNTIME.get(suffix, suffix)


def deploy_rows(table: ReportTable) -> list[DeployRow]:
    """The rows of the section, fastest first; [] when the report has no exported runtime."""
    if not any("@" in row.variant for row in table.rows):
        return []
    base = next((row for row in table.rows if row.is_baseline), None)
    reference = base.main_value if base is not None else None
    stars = {row.paired_baseline for row in table.rows if row.paired_baseline}
    rows = []
    for row in table.rows:
        if not row.ok or row.latency_ms is None:
            continue
        variant, runtime = split_runtime(row.variant)
        value = row.main_value
        delta = 100 * (value - reference) if value is not None and reference is not None else None
        rows.append(
            DeployRow(
                variant, runtime, value, delta, row.latency_ms, row.speedup, row.speedup_low, row.speedup_high,
                row.speedup_stable, row.variant in stars,
            )
        )
    return sorted(rows, key=lambda item: item.latency_ms)


def deploy_markdown(table: ReportTable) -> list[str]:
    """The section as Markdown lines ([] without exported runtimes)."""
    rows = deploy_rows(table)
    if not rows:
        return []
    metric = table.main_metric or "metric"
    lines = [
        "## What to deploy",
        "",
        f"Every variant in every runtime measured, fastest first; speed-up over U* (marked), the untrimmed "
        f"model at its fastest deployment; ✓ = within {WITHIN_POINTS:g} point of the untrimmed fp32 {metric}.",
        "",
        f"| variant | runtime | {metric} | Δ points | latency ms | speed-up vs U* | 95% interval | within {WITHIN_POINTS:g} |",
        "|:---|:---|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in rows:
        interval = f"{row.low:.2f}–{row.high:.2f}" if row.low is not None and row.high is not None else "-"
        speedup = "-" if row.speedup is None else f"{row.speedup:.2f}×" + ("" if row.stable is not False else " (unstable)")
        lines.append(
            f"| {row.variant}{' (U*)' if row.is_u_star else ''} | {row.runtime} | "
            f"{'-' if row.metric is None else f'{row.metric:.4f}'} | "
            f"{'-' if row.delta_points is None else f'{row.delta_points:+.2f}'} | {row.latency_ms:.2f} | "
            f"{'1.00× (reference)' if row.is_u_star else speedup} | {'-' if row.is_u_star else interval} | "
            f"{'✓' if row.delta_points is not None and round(row.delta_points, 6) >= -WITHIN_POINTS else ''} |"
        )
    return lines


def deploy_plot(table: ReportTable) -> bytes | None:
    """A PNG of the main metric vs latency, one marker and colour per runtime; None without points."""
    rows = [row for row in deploy_rows(table) if row.metric is not None]
    if not rows:
        return None
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import

    fig = Figure(figsize=(7, 5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^v"
    for index, runtime in enumerate(dict.fromkeys(row.runtime for row in rows)):
        chosen = [row for row in rows if row.runtime == runtime]
        ax.scatter(
            [row.latency_ms for row in chosen], [row.metric for row in chosen], marker=markers[index % len(markers)],
            color=f"C{index}", label=runtime, zorder=2,
        )
        for row in chosen:
            ax.annotate(row.variant, (row.latency_ms, row.metric), xytext=(4, 3), textcoords="offset points", fontsize=7)
    star = next((row for row in rows if row.is_u_star), None)
    if star is not None:
        ax.scatter([star.latency_ms], [star.metric], s=160, facecolors="none", edgecolors="k", linewidths=1.5,
                   zorder=3, label="U*")
    metric = table.main_metric or "metric"
    ax.set_xlabel(latency_label(table))
    ax.set_ylabel(f"{metric} ({table.task})" if table.task else metric)
    ax.set_title("what to deploy: accuracy vs latency per runtime" + (f" — {table.task}" if table.task else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
