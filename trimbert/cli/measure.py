"""``trimbert bench`` and ``report``: measure models side by side; collect records into a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trimbert.cli.app import JsonOpt, app, console, err_console, megabytes, print_json
from trimbert.cli.options import Group, with_options
from trimbert.errors import TrimbertError
from trimbert.measure.bench import BenchSettings


@app.command()
@with_options(Group("settings", BenchSettings))
def bench(
    models: Annotated[
        list[str], typer.Argument(help="One or more models (hub id, folder or alias), measured in one run.")
    ],
    settings: BenchSettings,
    vs: Annotated[
        str | None,
        typer.Option("--vs", help="Baseline model measured side by side (e.g. the untrimmed one)."),
    ] = None,
    names: Annotated[
        list[str] | None, typer.Option("--name", help="Variant name of each MODEL in records (repeat).")
    ] = None,
    vs_name: Annotated[str, typer.Option("--vs-name", help="Variant name of the baseline in records.")] = "baseline",
    out: Annotated[Path | None, typer.Option("--out", help="Also write the records to this JSON file.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the --out file if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Latency, throughput, train-step time, size and FLOPs of MODELS, side by side with --vs."""
    from trimbert.core.io import write_json_atomic
    from trimbert.core.outputs import check_output_path, output_error
    from trimbert.measure.bench import bench as run_bench

    if out is not None:  # before the benchmark, not after it
        out = check_output_path(out, force, kind="file", inputs=(*models, *([vs] if vs else [])))  # ~ expanded
        if out.is_dir():
            raise TrimbertError(f"--out {out} is a folder; give a file name for the records (e.g. bench.json)")
    settings = settings.resolved()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json or not err_console.is_terminal,  # a log gets no bar (and no stray blank line)
    ) as progress:
        bar = progress.add_task("benchmarking", total=None)

        def on_step(variant: str, step: int, total: int) -> None:
            progress.update(bar, completed=step, total=total, description=f"benchmarking {variant}")

        report = run_bench(models, settings, vs=vs, names=names, vs_name=vs_name, on_step=on_step)
    if out is not None:
        try:
            write_json_atomic(out, [record.to_dict() for record in report.records])
        except OSError as error:
            raise output_error(out, error) from error
    if as_json:
        print_json(report.to_dict())
        return
    _print_bench(report, settings)


def _print_bench(report, settings) -> None:
    table = Table(
        title=f"bench: batch {settings.batch_size}, seq {settings.seq_len}, {settings.mode}, {settings.device}"
    )
    for column in ("variant", "trim", "attention", "params", "disk", "GFLOPs/seq", "latency ms", "seq/s", "step ms"):
        table.add_column(column, justify="left" if column in ("variant", "trim", "attention") else "right")
    for record in report.records:
        table.add_row(
            record.variant,
            record.trim_summary,
            record.conditions.get("attention_implementation", "-"),
            f"{record.params / 1e6:.2f}M",
            megabytes(record.disk_bytes),
            f"{record.flops_per_seq / 1e9:.3f}",
            "-" if record.latency_ms is None else f"{record.latency_ms:.1f}",
            f"{record.throughput:.1f}",
            "-" if record.train_step_ms is None else f"{record.train_step_ms:.1f}",
        )
    console.print(table)
    for variant, choice in report.attention_choice.items():
        if choice["median_ms"]:
            timings = ", ".join(f"{impl} {ms:.1f} ms" for impl, ms in choice["median_ms"].items())
            console.print(f"{variant}: fastest softmax attention {choice['chosen']} ({timings})")
    if report.comparisons:
        ratios = Table(
            title="vs baseline: paired speed-up (median of per-round ratios) and its 95% interval; "
            "FLOP-ideal = baseline FLOPs / model FLOPs"
        )
        for column in ("variant", "vs", "quantity", "baseline", "model", "speed-up", "95% interval", "FLOP-ideal", "quotient", "rounds", "other CPU", "verdict"):
            ratios.add_column(column, justify="left" if column in ("variant", "vs", "quantity") else "right")
        for comparison in report.comparisons:
            ratios.add_row(
                comparison.variant,
                comparison.versus,
                comparison.quantity,
                f"{comparison.baseline:.2f}",
                f"{comparison.model:.2f}",
                f"{comparison.ratio:.2f}x",
                f"{comparison.low:.2f}–{comparison.high:.2f}",
                f"{comparison.flop_ideal:.2f}x",
                f"{comparison.quotient:.2f}",
                str(comparison.rounds),
                f"{100 * comparison.other_cpu:.0f}%",
                "stable" if comparison.stable else "UNSTABLE",
            )
        console.print(ratios)


@app.command()
def report(
    paths: Annotated[
        list[Path], typer.Argument(help="Run folders, sweep folders or records files (searched recursively).")
    ],
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Variant to compare with (default: the untrimmed one).")
    ] = None,
    task: Annotated[str | None, typer.Option("--task", help="Pick one task when the records mix several.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for report.md, results.csv/json and plots (default: the first PATH if it is a folder).",
        ),
    ] = None,
) -> None:
    """Accuracy vs size, FLOPs, latency and fine-tune time for every record found under PATHs."""
    from trimbert.core.outputs import output_error, write_marker
    from trimbert.report.aggregate import build_rows
    from trimbert.report.collect import collect_records
    from trimbert.report.render import render_table, write_report

    destination, new = _report_folder(paths, out)
    table = build_rows(collect_records(paths), baseline=baseline, task=task)
    console.print(render_table(table))
    try:
        written = write_report(table, destination)
        if new:  # a folder the report made is trimbert's
            write_marker(destination, kind="report")
    except OSError as error:
        raise output_error(destination, error) from error
    for kind, path in written.items():
        console.print(f"{kind}: {path}")


def _report_folder(paths: list[Path], out: Path | None) -> tuple[Path, bool]:
    """Where ``report`` writes (``--out``, else the first PATH if a folder, else its folder) and whether
    it is new, checked before any work: ``--out`` may not be empty, ``.``, ``..``, the current folder or
    an ancestor; report files already there are replaced only in a folder trimbert wrote (its marker, or
    an earlier trimbert output such as a sweep folder or an earlier report); the place must be writable."""
    from trimbert.core import outputs
    from trimbert.report.render import REPORT_FILES

    if out is not None:
        where = f"--out {out}"
        destination = outputs.output_target(str(out))  # ~ expanded once: used from here on
    else:
        destination = paths[0] if paths[0].is_dir() else paths[0].parent
        where = f"report {destination}"
    if destination.exists() and not destination.is_dir():
        raise TrimbertError(f"--out {destination} is a file; the report needs a folder")
    present = [name for name in REPORT_FILES if (destination / name).exists() or (destination / name).is_symlink()]
    if present and not outputs.written_by_trimbert(destination.resolve()):
        raise TrimbertError(
            f"{where}: refusing to replace {', '.join(present)} in a folder trimbert did not write "
            f"(no {outputs.MARKER_FILE}); remove {'them' if len(present) > 1 else 'it'} yourself or choose another --out"
        )
    outputs.check_writable_parent(str(destination), destination.resolve() / "report.md")
    return destination, not destination.exists()
