"""The typer app, the consoles and what every command shares: argument types, printing helpers.

Commands live in one module per group (``trim``, ``train``, ``measure``, ``sweep``) and register
themselves on :data:`app`; :func:`trimbert.cli.main` runs it. The CLI is the only layer that prints.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import version
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="trimbert",
    help="Trim BERT checkpoints the TrimBERT way (drop FFNs, cheaper attention normalizers, fewer "
    "LayerNorms), fine-tune and evaluate them, and report what it bought and cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Piped or captured output (files, CI logs) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

ModelArg = Annotated[
    str,
    typer.Argument(help="Hub id (bert-base-uncased), local folder, or alias 'minilm' (bundled, offline)."),
]
SamplesOpt = Annotated[
    int, typer.Option("--samples", help="Rows sampled for auto:N analysis and affine calibration.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output folder if it exists.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
SpecOpt = Annotated[
    str | None,
    typer.Option("--spec", help="A spec file written by trimbert search (best.json): the whole trim, instead of trim options."),
]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"trimbert {version('trimbert')}")
        raise typer.Exit()


# Set by --debug: unexpected errors then show their traceback instead of one line.
DEBUG = {"traceback": False}


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an unexpected error (a bug).")
    ] = False,
) -> None:
    """Trim BERT checkpoints and measure what it bought and cost."""
    DEBUG["traceback"] = debug


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def megabytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f} MB"


def print_metrics(title: str, metrics: dict[str, float], extra: list[tuple[str, str]]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    for name, value in extra:
        table.add_row(name, value)
    console.print(table)


def data_inputs(source) -> tuple[str | None, ...]:
    """What a :class:`~trimbert.data.source.DataSource` reads (its folder or files; for a GLUE task
    without --data-dir, $TRIMBERT_GLUE_DIR): inputs that no --out may replace."""
    glue = os.environ.get("TRIMBERT_GLUE_DIR") if source.task is not None and source.data_dir is None else None
    return (source.data_dir, source.train, source.validation, glue)


def say(message: str) -> None:
    """One plain line on stderr (warnings, notes), without rich markup."""
    err_console.print(message, highlight=False, markup=False, soft_wrap=True)
