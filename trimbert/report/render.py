"""Render a report table: rich table, Markdown, CSV/JSON files and the plots, written atomically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from rich.table import Table
from rich.text import Text

from trimbert.core.io import write_bytes_atomic, write_json_atomic
from trimbert.report.aggregate import ReportTable
from trimbert.report.columns import legend, shown_columns
from trimbert.report.deploy import deploy_markdown, deploy_plot
from trimbert.report.plots import latency_label, plot
from trimbert.report.tables import csv_text

PLOT_FILES = {
    "metric_vs_latency": "metric_vs_latency.png",
    "metric_vs_params": "metric_vs_params.png",
    "deploy": "deploy_metric_vs_latency.png",
}
# Every file write_report may write (and so replace) in its folder.
REPORT_FILES = ("report.md", "results.csv", "results.json", *PLOT_FILES.values())


# --------------------------------------------------------------------------------------------------
# Columns: one definition for the rich table, the Markdown table and the CSV



def render_table(table: ReportTable) -> Table:
    """The report as a rich table: baseline bold, failed rows dim, Pareto rows starred."""
    title = f"trimbert report — {table.task}" if table.task else "trimbert report"
    rich_table = Table(title=Text(title), caption=Text("\n".join(legend(table))), caption_justify="left")
    shown = shown_columns(table)
    for column in shown:
        rich_table.add_column(Text(column.header), justify=column.justify)
    for row in table.rows:
        style = "bold" if row.is_baseline else "dim" if not row.ok else None
        rich_table.add_row(*(Text(column.cell(row)) for column in shown), style=style)
    return rich_table


def render_markdown(table: ReportTable, plots: Iterable[str] = ()) -> str:
    """The report as Markdown: the table, the legend lines, and links to the ``plots`` files."""
    shown = shown_columns(table)

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    title = f"# trimbert report — {table.task}" if table.task else "# trimbert report"
    lines = [title, "", line(column.header for column in shown)]
    lines.append("|" + "|".join(":---" if c.justify == "left" else "---:" for c in shown) + "|")
    lines += [line(column.cell(row) for column in shown) for row in table.rows]
    lines += ["", *(f"{text}  " for text in legend(table))]
    lines += [f"\n![{Path(name).stem.replace('_', ' ')}]({name})" for name in plots if name != PLOT_FILES["deploy"]]
    section = deploy_markdown(table)
    if section:
        lines += ["", *section]
        lines += [f"\n![what to deploy]({name})" for name in plots if name == PLOT_FILES["deploy"]]
    return "\n".join(lines) + "\n"


def write_report(table: ReportTable, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``results.csv``, ``results.json`` and the plots into ``out_dir``.

    The plots are ``metric_vs_latency.png`` (skipped when no row has a latency and a metric) and
    ``metric_vs_params.png`` (skipped when no row has parameters and a metric). Every file is
    written atomically. With exported runtimes among the rows, the Markdown ends in the "what to deploy"
    section (:mod:`trimbert.report.deploy`) and ``deploy_metric_vs_latency.png`` is written. Returns the
    written files by kind: "markdown", "csv", "json", "metric_vs_latency", "metric_vs_params", "deploy".
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    paired = any(row.paired_speedup is not None and row.speedup == row.paired_speedup for row in table.rows)
    latency_axis = (
        ("relative_latency", "latency / baseline latency (paired: measured side by side)")
        if paired
        else ("latency_ms", latency_label(table))
    )
    for kind, cost_field, label in (
        ("metric_vs_latency", *latency_axis),
        ("metric_vs_params", "params", "parameters (M)"),
    ):
        png = plot(table, cost_field, label)
        if png is not None:
            written[kind] = out_dir / PLOT_FILES[kind]
            write_bytes_atomic(written[kind], png)
    png = deploy_plot(table)
    if png is not None:
        written["deploy"] = out_dir / PLOT_FILES["deploy"]
        write_bytes_atomic(written["deploy"], png)

    written["csv"] = out_dir / "results.csv"
    write_bytes_atomic(written["csv"], csv_text(table).encode())
    written["json"] = out_dir / "results.json"
    write_json_atomic(written["json"], [dataclasses.asdict(row) for row in table.rows])
    written["markdown"] = out_dir / "report.md"
    plots = [written[kind].name for kind in PLOT_FILES if kind in written]
    write_bytes_atomic(written["markdown"], render_markdown(table, plots).encode())
    return written
