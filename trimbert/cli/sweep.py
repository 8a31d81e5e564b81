"""``trimbert sweep``: run (or resume, or dry-run) a recipe of variants and report them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from trimbert.cli.app import app, console, err_console, say
from trimbert.cli.display import SweepDisplay


@app.command()
def sweep(
    recipe: Annotated[Path, typer.Argument(help="A recipe TOML file (see recipes/ and trimbert.sweep.recipe).")],
    out: Annotated[
        Path,
        typer.Option("--out", help="Sweep folder: results.jsonl, runs/<variant>-seed<k>/, report.md, plots."),
    ],
    only: Annotated[
        str | None,
        typer.Option("--only", help="Comma-separated variant names to run (their teachers come along)."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="I/N: run the I-th of N disjoint shares of the variants (own --out each)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun variants even when an up-to-date record exists.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate the recipe and show what would run; train nothing.")
    ] = False,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="KEY=VALUE: change one recipe key (repeatable; dotted, a variant by its name: finetune.epochs=2, "
            "variants.ffn-alternate.drop_ffn=1,3; the value is TOML, else a string).",
        ),
    ] = None,
) -> None:
    """Trim, fine-tune, evaluate and bench every variant of a RECIPE; rerun to resume. Exit 1 if any failed."""
    from trimbert.report.render import render_table
    from trimbert.sweep.plan import check_sweep_out, plan_sweep
    from trimbert.sweep.recipe import load_recipe
    from trimbert.sweep.run import run_sweep

    loaded = load_recipe(recipe, sets=sets or ())
    out = check_sweep_out(loaded, out)  # before the dry run too; ~ expanded once: used from here on
    if dry_run:
        _print_plan(recipe, loaded, plan_sweep(loaded, out, only=only, shard=shard, force=force))
        return
    with SweepDisplay(err_console, title=f"sweep {recipe} → {out}") as display:
        result = run_sweep(loaded, out, only=only, shard=shard, force=force, on_event=display)
    if result.table is not None:
        console.print(render_table(result.table))
    for kind, path in result.report.items():
        console.print(f"{kind}: {path}")
    console.print(
        f"{len(result.done)} ran, {len(result.skipped)} up to date, {len(result.failed)} failed "
        f"(records: {out / 'results.jsonl'})"
    )
    if result.report_error:
        say(f"warning: no report: {result.report_error}")
    if result.failed:
        say(f"failed: {', '.join(result.failed)}")
        raise typer.Exit(1)


def _print_plan(recipe: Path, loaded, plan) -> None:
    table = Table(title=f"{recipe}: {loaded.model} ({loaded.num_layers} blocks), task {loaded.task_name}")
    for column in ("unit", "trim", "teacher", "action", "why"):
        table.add_column(column)
    for item in plan:
        variant = loaded.variant(item.unit.variant)
        trim_text = variant.spec.summary() if variant.auto_drop is None else f"ffn-auto:{variant.auto_drop}"
        if variant.compress is not None:
            target = f"{variant.compress.speedup}x" if variant.compress.speedup else f"{variant.compress.latency_ms} ms"
            trim_text = f"compress {loaded.compress_source(variant)} to {target} ({variant.compress.runtime})"
        if variant.auto_drop is not None and not variant.spec.is_empty:
            trim_text += " " + variant.spec.summary()
        table.add_row(item.unit.name, trim_text, variant.teacher or "-", item.action, item.reason)
    console.print(table)
    runs = sum(item.action == "run" for item in plan)
    console.print(f"recipe OK: {len(plan)} units selected, {runs} to run, {len(plan) - runs} up to date")
