"""The ``trimbert`` command line: a thin typer layer over the library.

Each subcommand parses its options, calls one library function and prints the result with rich.
Errors a user can cause (:class:`TrimbertError`, bad options) print one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from trimbert import __version__
from trimbert.errors import TrimbertError

try:  # typer >= 0.2x vendors click as typer._click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exceptions

app = typer.Typer(
    name="trimbert",
    help="Trim BERT checkpoints the TrimBERT way (drop FFNs, cheaper attention normalizers, fewer "
    "LayerNorms), fine-tune and evaluate them, and report what it bought and cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)

ModelArg = Annotated[str, typer.Argument(help="Hub id (bert-base-uncased), local folder, or alias 'minilm' (bundled, offline).")]
DropFFNOpt = Annotated[
    str | None,
    typer.Option("--drop-ffn", help="Blocks whose FFN is removed: 1,3,5 | 6-11 | alternate | first:N | last:N | all | none."),
]
AttentionOpt = Annotated[
    str | None,
    typer.Option("--attention", help="Attention normalizer: softmax | relu | relu-len | sigmoid | softermax | squared-relu."),
]
LayerNormOpt = Annotated[
    str | None,
    typer.Option("--layernorm", help="LayerNorms to strip: none | half | attn | ffn | all | names like 0.attn,3.ffn."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output folder if it exists.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"trimbert {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Trim BERT checkpoints and measure what it bought and cost."""


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f} MB"


# ---------------------------------------------------------------- inspect / trim


@app.command()
def inspect(
    model: ModelArg,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Sequence length for the FLOPs count.")] = 128,
    as_json: JsonOpt = False,
) -> None:
    """Show each block (FFN kept or dropped, remaining LayerNorms, attention) and the totals."""
    from trimbert.checkpoint import load, local_dir, resolve_source
    from trimbert.measure import check_seq_len
    from trimbert.summary import describe_model

    loaded = load(model)
    check_seq_len(loaded, seq_len)
    summary = describe_model(loaded, source=model, seq_len=seq_len, checkpoint_dir=local_dir(resolve_source(model)))
    if as_json:
        _print_json(summary.to_dict())
        return
    table = Table(title=f"{model} — {summary.model_class}, {summary.trim_summary}")
    for column in ("block", "FFN", "LayerNorms", "attention", "params"):
        table.add_column(column, justify="right" if column in ("block", "params") else "left")
    for block in summary.blocks:
        table.add_row(
            str(block.index),
            block.ffn,
            ", ".join(block.layernorms) or "-",
            block.attention,
            f"{block.params:,}",
        )
    console.print(table)
    disk_note = "" if summary.disk_bytes_source == "files" else " (state dict)"
    console.print(
        f"parameters {summary.params:,} · encoder {summary.encoder_params:,} · "
        f"on disk {_mb(summary.disk_bytes)}{disk_note} · "
        f"{summary.flops_per_seq / 1e9:,.3f} GFLOPs per sequence at seq-len {summary.seq_len}"
    )


@app.command()
def trim(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the trimmed checkpoint to.")],
    drop_ffn: DropFFNOpt = None,
    attention: AttentionOpt = None,
    layernorm: LayerNormOpt = None,
    force: ForceOpt = False,
) -> None:
    """Trim MODEL and save it (safetensors, trim spec in config.json, tokenizer copied)."""
    import trimbert
    from trimbert.checkpoint import check_output_dir

    check_output_dir(out, force)
    loaded = trimbert.load(model)
    before = loaded.config.num_hidden_layers
    trimmed = trimbert.trim(loaded, drop_ffn=drop_ffn, attention=attention, layernorm=layernorm)
    trimbert.save(trimmed, out, tokenizer=trimbert.load_tokenizer(model), force=force)
    spec = trimmed.config.spec
    console.print(f"trimmed {model} ({before} blocks) → {out}: {spec.summary()}")
    console.print(f"  spec: {json.dumps(spec.to_dict())}")


# ---------------------------------------------------------------- entry point


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"warning: {message}", highlight=False, markup=False)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the app, turning user errors into one line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.showwarning = _one_line_warning
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="trimbert", standalone_mode=False)
    except TrimbertError as error:
        err_console.print(f"error: {error}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except click_exceptions.UsageError as error:
        where = f"{error.ctx.command_path}: " if error.ctx is not None else ""
        err_console.print(f"error: {where}{error.format_message()}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
    except (click_exceptions.Exit, typer.Exit) as exit_:
        sys.exit(exit_.exit_code)
    except (click_exceptions.Abort, typer.Abort):
        err_console.print("aborted", highlight=False)
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    sys.exit(0)
