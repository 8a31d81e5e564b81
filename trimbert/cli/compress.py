"""``trimbert compress``: a fine-tuned model, a target speed-up over U*, a runtime -> a deployable folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trimbert.cli.app import ForceOpt, JsonOpt, ModelArg, app, console, print_json, say
from trimbert.cli.options import Group, with_options
from trimbert.cli.search import DEFAULT_CACHE, CacheDirOpt
from trimbert.compress.settings import CompressSettings
from trimbert.data.source import DataSource


@app.command()
@with_options(Group("source", DataSource), Group("settings", CompressSettings))
def compress(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="Folder of the job: model/ (deployable), compress.json, report.md.")],
    source: DataSource,
    settings: CompressSettings,
    cache_dir: CacheDirOpt = DEFAULT_CACHE,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Compress a fine-tuned MODEL to --speedup over U* (or --latency-ms) in --runtime (without retraining, or
    with --method search), optionally --recover, export, evaluate and time it against U*. A re-run of the same
    command resumes."""
    from trimbert.compress.job import run_compress
    from trimbert.compress.report import write_report
    from trimbert.search.latency import check_cache_dir
    from trimbert.train.finetune import source_for_run

    check_cache_dir(cache_dir)
    if source.task is None and source.train is None:
        source = source_for_run(model, data_dir=source.data_dir)

    def progress(stage: str, message: str) -> None:
        if not as_json:
            say(f"[{stage}] {message}")

    job = run_compress(model, source, out, settings, force=force, cache_dir=cache_dir, on_progress=progress)
    summary = write_report(Path(out).expanduser(), job)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"compress: {model} -> {out}/model")
    table.add_column("")
    table.add_column("value", justify="right")
    for name, value in summary["rows"]:
        table.add_row(name, value)
    console.print(table)
    console.print(f"report: {Path(out) / 'report.md'}")
